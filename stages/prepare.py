"""Stage `prepare`: validate, normalize, deduplicate and split the raw records of every source in params.

Reads:  data/raw/<name>.jsonl and data/rejected/<name>.jsonl (rows the loaders refused) of each
        `sources.<name>` in params, nothing else (a file left by a removed source is ignored,
        with a warning), params [seed, sources (their names), prepare]
Writes: data/prepared/{train,val,test}.jsonl, data/prepared/rejected.jsonl (every bad row with
        file, line, reason), metrics/prepare.json, plots/prepare/intents.csv (intent distribution)
Run:    python -m stages.prepare data/raw data/rejected data/prepared metrics/prepare.json plots/prepare
"""
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.core.io import read_jsonl, write_json, write_jsonl
from synthtune.core.plots import write_csv
from synthtune.curate.prepare import intent_distribution, orphan_files, prepare_records, source_files

log = logging.getLogger("stages.prepare")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "raw", "rejected", "out", "metrics", "plots")
    raw_files = source_files(args.raw, params.sources)
    reject_files = source_files(args.rejected, params.sources, what="rejects")
    for path in orphan_files(args.raw, params.sources) + orphan_files(args.rejected, params.sources):
        log.warning("ignoring %s: no such source in params (left by a removed source? delete it)", path)
    load_rejects = [row for path in reject_files for row in read_jsonl(path, allow_empty=True)]
    result = prepare_records(raw_files, params.seed, params.prepare, load_rejects)
    for split, rows in result.splits.items():
        write_jsonl(args.out / f"{split}.jsonl", rows)
    write_jsonl(args.out / "rejected.jsonl", result.rejects)
    write_json(args.metrics, result.metrics())
    write_csv(args.plots / "intents.csv", intent_distribution(result.splits))
    log.info("prepared %s", result.metrics())


if __name__ == "__main__":
    run_stage(main)
