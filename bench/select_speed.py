"""Bench: the select step (near-dup removal, decontamination, TF-IDF+SVD, k-means, quota) at scale.

Synthetic chat records (random words from a 20k vocabulary, 5% planted near-copies with one
of 40 words changed: Jaccard of word 3-shingles ~0.85, threshold 0.7) at 10k / 30k / 100k records; times each size, peak RSS, and near-duplicate
recall/precision on the planted copies. Targets (issue: data selection): 100k <= 60 s and
<= 4 GB peak RSS on 2 cores; recall >= 0.95 at precision >= 0.99. The 2-D map is timed apart
(`map_seconds`, not in the 60 s target): UMAP of a seeded 4,000-point sample of the 100k pool
(`select.map_max_points`), first call in the process, so numba's JIT is included. Community
detection (O(n^2) similarities, in bounded memory) is timed at 30k for reference, with the near-dup
filter off so that the planted pairs form communities (min size 2, outliers kept). Writes
bench/results/select_speed.json.
"""
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthtune.core.config import SelectParams  # noqa: E402
from synthtune.curate.selection import clean_pool, select_pool  # noqa: E402
from synthtune.curate.selection_map import write_selection_map  # noqa: E402

SIZES = (10_000, 30_000, 100_000)
VOCAB = [f"w{i}" for i in range(20_000)]


def pool(n: int, seed: int = 0) -> tuple[list[dict], set[str]]:
    rng = random.Random(seed)
    n_copies = n // 20
    records, copies = [], set()
    for i in range(n - n_copies):
        words = rng.choices(VOCAB, k=40)
        records.append({"id": f"r{i:07d}", "source": "bench", "group": f"g{i}", "messages": [
            {"role": "user", "content": " ".join(words[:15])}, {"role": "assistant", "content": " ".join(words[15:])}]})
    for j in range(n_copies):
        original = records[j]
        text = (original["messages"][0]["content"] + " " + original["messages"][1]["content"]).split()
        for pos in rng.sample(range(40), 1):
            text[pos] = rng.choice(VOCAB)
        copy_id = f"s{j:07d}"   # sorts after "r…": the original is the one kept
        copies.add(copy_id)
        records.append({"id": copy_id, "source": "bench", "group": f"c{j}", "messages": [
            {"role": "user", "content": " ".join(text[:15])}, {"role": "assistant", "content": " ".join(text[15:])}]})
    return records, copies


def main() -> None:
    params = SelectParams(near_dup_threshold=0.7, n_samples=10_000, n_clusters=50, svd_dims=64, map_max_points=4000)
    results = {}
    for n in SIZES:
        records, copies = pool(n)
        evals = pool(200, seed=99)[0]
        started, cpu_started = time.perf_counter(), time.process_time()
        selection = select_pool(records, params, seed=42, eval_records=evals)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        selected, metrics = selection.records, selection.metrics
        kept, _ = clean_pool(records, [], params.model_copy(update={"decontam_ngram": 0}))
        dropped = {r["id"] for r in records} - {r["id"] for r in kept}
        recall = len(dropped & copies) / len(copies)
        precision = len(dropped & copies) / max(1, len(dropped))
        results[str(n)] = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2), "selected": len(selected),
                           "near_duplicates_removed": metrics["near_duplicates_removed"],
                           "near_dup_recall": round(recall, 4), "near_dup_precision": round(precision, 4)}
        print(f"select {n:>7} records: {seconds:6.1f} s ({cpu_seconds:.1f} s CPU), removed {metrics['near_duplicates_removed']} near-dups "
              f"(recall {recall:.3f}, precision {precision:.3f}), selected {len(selected)}")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        map_metrics = write_selection_map(Path(tmp), selection, params, seed=42)
    map_seconds = time.perf_counter() - started
    print(f"map of the 100k pool: {map_metrics['map_method']} of {map_metrics['map_points']} sampled points, "
          f"{map_seconds:.1f} s (first UMAP call: numba JIT included)")
    records, _ = pool(30_000)
    started = time.perf_counter()
    community = select_pool(records, params.model_copy(update={"clustering": "community", "near_dup": False,
                                                               "decontam_ngram": 0, "community_min_size": 2,
                                                               "community_outliers": "keep"}), 42)
    community_seconds = time.perf_counter() - started
    print(f"select 30k with community detection (cosine >= 0.75, size >= 2: the planted pairs): "
          f"{community_seconds:.1f} s, {community.metrics['n_clusters'] - 1} communities + 1 cluster of outliers")
    summary = {"sizes": results, "peak_rss_gb": round(peak_gb, 2), "target_seconds_100k": 60.0,
               "load_average_1min_at_end": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
               "map_seconds_100k": round(map_seconds, 2), "map_points": map_metrics["map_points"],
               "map_method": map_metrics["map_method"], "community_seconds_30k": round(community_seconds, 2),
               "communities_30k": community.metrics["n_clusters"] - 1,
               "peak_rss_gb_with_map_and_community": round(
                   resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2),
               "target_peak_rss_gb": 4.0,
               "ratio_100k_over_10k": round(results["100000"]["seconds"] / results["10000"]["seconds"], 2)}
    out = ROOT / "bench/results/select_speed.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"peak RSS {peak_gb:.2f} GB; 100k/10k time ratio {summary['ratio_100k_over_10k']} (10 = linear) -> {out}")


if __name__ == "__main__":
    main()
