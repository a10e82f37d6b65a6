"""Select: embed the training pool, cluster it, and draw a diverse subset.

Hygiene first (synthtune.curate.dedup): near-duplicates and records contaminated by val/test are removed
and counted. Then the seed "Data V5" method: embed (synthtune.text.embeddings: TF-IDF+SVD or a
sentence-transformers model), cluster (MiniBatchKMeans, or threshold community detection with
outliers dropped or kept), quota per cluster floor(|c| * N / sum |c|), at least 1, sampled with
the seed. `strategy: random` (a plain seeded sample) and `all` are the baselines; every strategy
reports the same diversity metrics, so experiments compare. Inputs too small for the params fall
back sensibly and each fallback is one `fallback_*` key in the metrics.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthtune.core.config import SelectParams
from synthtune.text.embeddings import embed_texts
from synthtune.core.errors import InputError, ParamsError

log = logging.getLogger(__name__)

SIMILARITY_BLOCK_BYTES = 256 * 2 ** 20     # community detection: at most this much similarity matrix at a time


def record_text(record: dict) -> str:
    if record.get("messages") is not None:
        return "\n".join(m["content"] for m in record["messages"])
    return record["text"]


def prompt_text(record: dict) -> str:
    """What a model is asked: the user turns of a conversation, or a raw text record."""
    if record.get("messages") is not None:
        return "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")
    return record["text"]


def proportional_quota(sizes: dict[int, int], n_samples: int) -> dict[int, int]:
    """floor(|c| * N / sum |c|) with a minimum of 1, never more than the cluster holds."""
    total = sum(sizes.values())
    return {c: min(size, max(1, (size * n_samples) // total)) for c, size in sizes.items()}


def uniform_quota(sizes: dict[int, int], n_samples: int) -> dict[int, int]:
    """Equal shares of N; a cluster smaller than its share gives the rest to the others."""
    quota, remaining = {}, n_samples
    ordered = sorted(sizes, key=lambda c: (sizes[c], c))
    for position, cluster in enumerate(ordered):
        quota[cluster] = min(sizes[cluster], remaining // (len(ordered) - position))
        remaining -= quota[cluster]
    return quota


def mean_pairwise_distance(vectors: np.ndarray, seed: int, max_points: int = 2000) -> float:
    """Mean cosine distance between distinct selected records (a sample of 2,000 at most)."""
    if len(vectors) < 2:
        return 0.0
    if len(vectors) > max_points:
        vectors = vectors[np.random.default_rng(seed).choice(len(vectors), max_points, replace=False)]
    sims = vectors @ vectors.T
    n = len(vectors)
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def _similarity_blocks(vectors: np.ndarray, rows: np.ndarray):
    """(row indices, their cosine similarities to every vector), a bounded block at a time."""
    step = max(1, SIMILARITY_BLOCK_BYTES // (4 * max(1, len(vectors))))
    for start in range(0, len(rows), step):
        block = rows[start:start + step]
        yield block, vectors[block] @ vectors.T


def community_detection(vectors: np.ndarray, threshold: float, min_size: int) -> list[np.ndarray]:
    """Communities of unit vectors whose cosine to a central point is >= threshold, largest first.

    The algorithm of sentence-transformers' util.community_detection (centres by neighbour count,
    largest first; a community keeps the neighbours no earlier community took; kept when it has
    >= min_size members), but in bounded memory: similarities are computed a block of rows at a
    time, twice (counts, then the greedy pass), and no neighbour list outlives its block, where
    the library keeps one per candidate centre (n^2 indices for a dense pool).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    counts = np.zeros(len(vectors), dtype=np.int64)
    for block, sims in _similarity_blocks(vectors, np.arange(len(vectors))):
        counts[block] = (sims >= threshold).sum(axis=1)
    centres = np.flatnonzero(counts >= min_size)
    centres = centres[np.argsort(-counts[centres], kind="stable")]
    used = np.zeros(len(vectors), dtype=bool)
    communities = []
    for block, sims in _similarity_blocks(vectors, centres):
        for centre, row in zip(block, sims):
            if used[centre]:
                continue
            members = np.flatnonzero((row >= threshold) & ~used)
            if len(members) >= min_size:
                communities.append(np.concatenate([[centre], members[members != centre]]))
                used[members] = used[centre] = True
    return sorted(communities, key=len, reverse=True)


def cluster(vectors: np.ndarray, params: SelectParams, seed: int) -> tuple[np.ndarray, dict]:
    """A cluster id per record; -1 marks community outliers that are dropped."""
    n, metrics = len(vectors), {}
    if params.clustering == "kmeans":
        _, identical = np.unique(vectors, axis=0, return_inverse=True)
        distinct = int(identical.max()) + 1
        if params.n_clusters >= distinct:       # one cluster per distinct record: exact, no k-means needed
            if params.n_clusters > distinct:
                metrics["fallback_n_clusters"] = f"n_clusters {params.n_clusters} > {distinct} distinct records: " \
                                                 f"used {distinct}"
            return identical.reshape(-1).astype(np.int64), metrics
        from sklearn.cluster import MiniBatchKMeans

        kmeans = MiniBatchKMeans(n_clusters=params.n_clusters, random_state=seed, n_init=3)
        return kmeans.fit_predict(vectors).astype(np.int64), metrics
    min_size = min(params.community_min_size, n)
    if min_size < params.community_min_size:
        metrics["fallback_community_min_size"] = f"community_min_size {params.community_min_size} > pool of {n}: used {n}"
    labels = np.full(n, -1, dtype=np.int64)
    for cid, members in enumerate(community_detection(vectors, params.community_threshold, min_size)):
        labels[members] = cid
    metrics["outliers"] = int((labels == -1).sum())
    if params.community_outliers == "keep":
        labels[labels == -1] = labels.max() + 1      # the outliers become one more cluster
    elif metrics["outliers"] == n:
        raise ParamsError(f"select.community_threshold: no community of >= {min_size} records at cosine >= "
                          f"{params.community_threshold} in a pool of {n}; lower select.community_threshold or "
                          "select.community_min_size, or set select.community_outliers: keep")
    return labels, metrics


def choose(labels: np.ndarray, params: SelectParams, seed: int) -> tuple[np.ndarray, dict]:
    """Sorted indices of the selected records."""
    eligible = np.flatnonzero(labels >= 0) if params.strategy == "cluster_quota" else np.arange(len(labels))
    if params.strategy == "all":
        return eligible, {}
    if params.n_samples >= len(eligible):
        return eligible, {"fallback_n_samples": f"n_samples {params.n_samples} >= {len(eligible)} eligible records: "
                                                "kept them all"}
    rng = np.random.default_rng(seed)
    if params.strategy == "random":
        return np.sort(rng.choice(eligible, size=params.n_samples, replace=False)), {}
    sizes = Counter(int(label) for label in labels[eligible])
    share = uniform_quota if params.quota == "uniform" else proportional_quota
    chosen: list[int] = []
    for cid, count in sorted(share(dict(sizes), params.n_samples).items()):
        chosen.extend(rng.choice(np.flatnonzero(labels == cid), size=count, replace=False).tolist())
    return np.sort(np.array(chosen, dtype=np.int64)), {}


def clean_pool(pool: list[dict], eval_records: list[dict], params: SelectParams) -> tuple[list[dict], dict]:
    """Drop near-duplicates within the pool and records contaminated by the val/test splits."""
    from synthtune.curate.dedup import contaminated, near_duplicates

    metrics = {"near_duplicates_removed": 0, "contaminated_removed": 0}
    if params.near_dup and len(pool) > 1:
        drop = near_duplicates([record_text(r) for r in pool], [r["id"] for r in pool], params.near_dup_threshold)
        pool = [r for i, r in enumerate(pool) if i not in drop]
        metrics["near_duplicates_removed"] = len(drop)
    if params.decontam_ngram and eval_records:
        view = prompt_text if params.decontam_scope == "prompts" else record_text
        drop = contaminated([view(r) for r in pool], [view(r) for r in eval_records], params.decontam_ngram)
        pool = [r for i, r in enumerate(pool) if i not in drop]
        metrics["contaminated_removed"] = len(drop)
    return pool, metrics


@dataclass
class Selection:
    pool: list[dict]          # the pool after hygiene
    vectors: np.ndarray       # one unit vector per pool record
    labels: np.ndarray        # cluster per pool record, -1: dropped outlier
    chosen: np.ndarray        # sorted indices into pool
    metrics: dict

    @property
    def records(self) -> list[dict]:
        return [self.pool[i] for i in self.chosen]


def select_pool(pool: list[dict], params: SelectParams, seed: int, eval_records: list[dict] | None = None,
                cache_path: Path | None = None) -> Selection:
    """Hygiene, embedding, clustering and the strategy's choice, with flat metrics."""
    metrics: dict = {"pool_records": len(pool), "strategy": params.strategy, "embedder": params.embedder,
                     "clustering": params.clustering}
    if not pool:
        raise InputError("select: the training pool is empty (prepare wrote no train records): nothing to select")
    pool, cleaning = clean_pool(pool, eval_records or [], params)
    metrics.update(cleaning)
    if not pool:
        raise InputError(f"select: all {metrics['pool_records']} pool records were removed as near-duplicates or "
                         "contaminated: nothing to select; check select.near_dup_threshold and select.decontam_ngram")
    vectors, embed_stats = embed_texts([record_text(r) for r in pool], params.embedder, params.svd_dims, seed, cache_path)
    labels, cluster_metrics = cluster(vectors, params, seed)
    chosen, choice_metrics = choose(labels, params, seed)
    sizes = np.array(sorted(Counter(labels[labels >= 0].tolist()).values()), dtype=float)
    probs = sizes / sizes.sum()
    metrics.update(embed_stats | cluster_metrics | choice_metrics | {
        "selected_records": len(chosen),
        "n_clusters": len(sizes),
        "cluster_size_entropy": round(float(-(probs * np.log(probs)).sum()), 4) + 0.0,
        "largest_cluster": int(sizes.max()),
        "smallest_cluster": int(sizes.min()),
        "mean_pairwise_distance": round(mean_pairwise_distance(vectors[chosen], seed), 4),
        "pool_mean_pairwise_distance": round(mean_pairwise_distance(vectors, seed), 4),
    })
    metrics.update({f"selected_from_{source}": count
                    for source, count in sorted(Counter(pool[i]["source"] for i in chosen).items())})
    return Selection(pool, vectors, labels, chosen, metrics)


def select_records(pool: list[dict], params: SelectParams, seed: int, eval_records: list[dict] | None = None,
                   cache_path: Path | None = None) -> tuple[list[dict], dict]:
    """Return (selected records, metrics)."""
    selection = select_pool(pool, params, seed, eval_records, cache_path)
    return selection.records, selection.metrics
