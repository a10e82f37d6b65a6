"""Stage `prepare`: validate, normalize, deduplicate and split every raw source.

Reads:  data/raw/*.jsonl, data/rejected/*.jsonl (rows the loaders refused), params [seed, prepare]
Writes: data/prepared/{train,val,test}.jsonl, data/prepared/rejected.jsonl (every bad row with
        file, line, reason), metrics/prepare.json, plots/prepare/intents.csv (intent distribution)
Run:    python -m stages.prepare data/raw data/rejected data/prepared metrics/prepare.json plots/prepare
"""
import argparse
import logging
from pathlib import Path

from synthtune.core.cli import run_stage
from synthtune.core.config import load_params
from synthtune.core.io import read_jsonl, write_json, write_jsonl
from synthtune.core.plots import write_csv
from synthtune.curate.prepare import intent_distribution, prepare_records

log = logging.getLogger("stages.prepare")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("rejected", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("plots", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
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
