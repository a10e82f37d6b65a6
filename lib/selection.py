"""Select: embed the training pool, cluster it, and draw a proportional quota per cluster.

Hygiene first (lib.dedup): near-duplicates and records contaminated by val/test are removed
and counted. Then the seed "Data V5" method: quota per cluster floor(|c| * N / sum |c|), at
least 1, sampled with the seed. This version embeds with TF-IDF + TruncatedSVD (offline) and
clusters with MiniBatchKMeans; community detection, sentence-transformers and the UMAP map
come with the selection issue.
"""
from __future__ import annotations

import logging
from collections import Counter

import numpy as np

from lib.config import SelectParams
from lib.errors import InputError

log = logging.getLogger(__name__)


def record_text(record: dict) -> str:
    if record.get("messages") is not None:
        return "\n".join(m["content"] for m in record["messages"])
    return record["text"]


def embed_tfidf(texts: list[str], dims: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    matrix = TfidfVectorizer(sublinear_tf=True, min_df=1).fit_transform(texts)
    dims = min(dims, matrix.shape[1] - 1, matrix.shape[0] - 1)
    if dims < 2:  # too few records or terms for SVD: use the sparse vectors densely
        return normalize(matrix).toarray()
    return normalize(TruncatedSVD(n_components=dims, random_state=seed).fit_transform(matrix))


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


def prompt_text(record: dict) -> str:
    """What a model is asked: the user turns of a conversation, or a raw text record."""
    if record.get("messages") is not None:
        return "\n".join(m["content"] for m in record["messages"] if m["role"] == "user")
    return record["text"]


def clean_pool(pool: list[dict], eval_records: list[dict], params: SelectParams) -> tuple[list[dict], dict]:
    """Drop near-duplicates within the pool and records contaminated by the val/test splits."""
    from lib.dedup import contaminated, near_duplicates

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


def select_records(pool: list[dict], params: SelectParams, seed: int,
                   eval_records: list[dict] | None = None) -> tuple[list[dict], dict]:
    """Return (selected records, metrics). Small pools fall back sensibly and say so in metrics."""
    metrics = {"pool_records": len(pool), "strategy": params.strategy}
    pool, cleaning = clean_pool(pool, eval_records or [], params)
    metrics.update(cleaning)
    if not pool:
        raise InputError("select: the training pool is empty (after dedup/decontamination): nothing to train on")
    if params.strategy == "all" or len(pool) <= params.n_samples:
        if params.strategy != "all":
            metrics["fallback"] = "n_samples >= pool size: kept the whole pool"
        metrics["selected_records"] = len(pool)
        metrics.update({f"selected_from_{source}": count
                        for source, count in sorted(Counter(r["source"] for r in pool).items())})
        return list(pool), metrics

    from sklearn.cluster import MiniBatchKMeans

    vectors = embed_tfidf([record_text(r) for r in pool], params.svd_dims, seed)
    n_clusters = min(params.n_clusters, len(pool))
    if n_clusters < params.n_clusters:
        metrics["fallback"] = f"n_clusters {params.n_clusters} > pool size: used {n_clusters}"
    labels = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3).fit_predict(vectors)
    sizes = Counter(int(label) for label in labels)
    share = uniform_quota if params.quota == "uniform" else proportional_quota
    quota = share(dict(sizes), params.n_samples)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for cluster in sorted(quota):
        members = np.flatnonzero(labels == cluster)
        chosen.extend(rng.choice(members, size=quota[cluster], replace=False).tolist())
    selected = [pool[i] for i in sorted(chosen)]
    probs = np.array(list(sizes.values()), dtype=float) / len(pool)
    metrics.update({
        "selected_records": len(selected),
        "n_clusters": n_clusters,
        "cluster_size_entropy": round(float(-(probs * np.log(probs)).sum()), 4),
        "largest_cluster": max(sizes.values()),
        "smallest_cluster": min(sizes.values()),
        "mean_pairwise_distance": round(mean_pairwise_distance(vectors[sorted(chosen)], seed), 4),
        "pool_mean_pairwise_distance": round(mean_pairwise_distance(vectors, seed), 4),
    })
    metrics.update({f"selected_from_{source}": count
                    for source, count in sorted(Counter(r["source"] for r in selected).items())})
    return selected, metrics
