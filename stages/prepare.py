"""Stage `prepare`: validate, normalize, deduplicate and split every raw source.

Reads:  data/raw/*.jsonl, data/rejected/*.jsonl (rows the loaders refused), params [seed, prepare]
Writes: data/prepared/{train,val,test}.jsonl, data/prepared/rejected.jsonl (every bad row with
        file, line, reason), metrics/prepare.json, plots/prepare/intents.csv (intent distribution)
Run:    python -m stages.prepare data/raw data/rejected data/prepared metrics/prepare.json plots/prepare
"""
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.core.io import read_jsonl, write_json, write_jsonl
from synthtune.core.plots import write_csv
from synthtune.curate.prepare import intent_distribution, prepare_records

log = logging.getLogger("stages.prepare")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "raw", "rejected", "out", "metrics", "plots")
    load_rejects = [row for path in sorted(args.rejected.glob("*.jsonl"))
                    for row in read_jsonl(path, allow_empty=True)]
    result = prepare_records(sorted(args.raw.glob("*.jsonl")), params.seed, params.prepare, load_rejects)
    for split, rows in result.splits.items():
        write_jsonl(args.out / f"{split}.jsonl", rows)
    write_jsonl(args.out / "rejected.jsonl", result.rejects)
    write_json(args.metrics, result.metrics())
    write_csv(args.plots / "intents.csv", intent_distribution(result.splits))
    log.info("prepared %s", result.metrics())


if __name__ == "__main__":
    run_stage(main)
