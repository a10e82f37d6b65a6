"""Bench: the select step (near-dup removal, decontamination, TF-IDF+SVD, k-means, quota) at scale.

Synthetic chat records (random words from a 20k vocabulary, 5% planted near-copies with one
of 40 words changed: Jaccard of word 3-shingles ~0.85, threshold 0.7) at 10k / 30k / 100k records; times each size, peak RSS, and near-duplicate
recall/precision on the planted copies. Targets (issue: data selection): 100k <= 60 s and
<= 4 GB peak RSS on 2 cores; recall >= 0.95 at precision >= 0.99. Writes
bench/results/select_speed.json.
"""
import json
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lib.config import SelectParams  # noqa: E402
from lib.selection import clean_pool, select_records  # noqa: E402

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
    params = SelectParams(near_dup_threshold=0.7, n_samples=10_000, n_clusters=50, svd_dims=64)
    results = {}
    for n in SIZES:
        records, copies = pool(n)
        evals = pool(200, seed=99)[0]
        started = time.perf_counter()
        selected, metrics = select_records(records, params, seed=42, eval_records=evals)
        seconds = time.perf_counter() - started
        kept, _ = clean_pool(records, [], params.model_copy(update={"decontam_ngram": 0}))
        dropped = {r["id"] for r in records} - {r["id"] for r in kept}
        recall = len(dropped & copies) / len(copies)
        precision = len(dropped & copies) / max(1, len(dropped))
        results[str(n)] = {"seconds": round(seconds, 2), "selected": len(selected),
                           "near_duplicates_removed": metrics["near_duplicates_removed"],
                           "near_dup_recall": round(recall, 4), "near_dup_precision": round(precision, 4)}
        print(f"select {n:>7} records: {seconds:6.1f} s, removed {metrics['near_duplicates_removed']} near-dups "
              f"(recall {recall:.3f}, precision {precision:.3f}), selected {len(selected)}")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    summary = {"sizes": results, "peak_rss_gb": round(peak_gb, 2), "target_seconds_100k": 60.0,
               "target_peak_rss_gb": 4.0,
               "ratio_100k_over_10k": round(results["100000"]["seconds"] / results["10000"]["seconds"], 2)}
    out = ROOT / "bench/results/select_speed.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"peak RSS {peak_gb:.2f} GB; 100k/10k time ratio {summary['ratio_100k_over_10k']} (10 = linear) -> {out}")


if __name__ == "__main__":
    main()
