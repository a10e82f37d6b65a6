"""Bench: the prepare step (validate, normalize, dedup, split) on 10k / 30k / 100k records.

Writes synthetic chat records (1% malformed rows) to a temp folder and times `prepare_records`
plus the writes of the splits and rejects at each size, to show the cost grows linearly. Target (issue: source loaders): 100k <= 30 s on
2 cores. Prints the figures and writes bench/results/prepare_speed.json.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthtune.core.config import PrepareParams  # noqa: E402
from synthtune.core.io import write_jsonl  # noqa: E402
from synthtune.curate.prepare import prepare_records  # noqa: E402

SIZES = (10_000, 30_000, 100_000)


def write_pool(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            if i % 100 == 99:
                handle.write('{"source": "bench", "messages": [\n')   # malformed: quarantined
                continue
            record = {"source": "bench", "group": f"g{i // 4}", "messages": [
                {"role": "user", "content": f"How do I cook   recipe number {i} with {i % 17} onions?"},
                {"role": "assistant", "content": f"Step 1: chop {i % 17} onions.\nStep 2: simmer for {i % 40} min."}]}
            handle.write(json.dumps(record) + "\n")


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            path = Path(tmp) / f"pool_{n}.jsonl"
            write_pool(path, n)
            started = time.perf_counter()
            prepared = prepare_records([path], seed=42, params=PrepareParams())
            for split, rows in prepared.splits.items():   # the stage's writes count too
                write_jsonl(Path(tmp) / f"{split}_{n}.jsonl", rows)
            write_jsonl(Path(tmp) / f"rejected_{n}.jsonl", prepared.rejects)
            seconds = time.perf_counter() - started
            kept = sum(len(rows) for rows in prepared.splits.values())
            results[str(n)] = {"seconds": round(seconds, 2), "records_per_s": round(n / seconds),
                               "kept": kept, "rejected": len(prepared.rejects)}
            print(f"prepare {n:>7} records: {seconds:6.2f} s ({n / seconds:,.0f}/s), "
                  f"kept {kept}, rejected {len(prepared.rejects)}")
    summary = {"sizes": results, "target_seconds_100k": 30.0,
               "ratio_100k_over_10k": round(results["100000"]["seconds"] / results["10000"]["seconds"], 2)}
    out = ROOT / "bench/results/prepare_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"100k/10k time ratio {summary['ratio_100k_over_10k']} (10.0 = linear) -> {out}")


if __name__ == "__main__":
    main()
