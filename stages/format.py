"""Stage `format`: render records in the chosen template and fit them to the token budget.

Templates (format.template): chat, qa, alpaca, seq2seq, syntod, text; see lib/templates.py.

Reads:  data/selected/train.jsonl, data/prepared/{val,test}.jsonl, models/base (tokenizer), params [format, model]
Writes: data/formatted/{train,val,test}.jsonl, data/formatted/format.json (template manifest),
        metrics/format.json, plots/format/lengths.csv (token-length histogram)
Run:    python -m stages.format data/selected/train.jsonl data/prepared models/base data/formatted
            metrics/format.json plots/format
"""
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.core.io import read_jsonl, write_json, write_jsonl
from synthtune.model.base_model import load_tokenizer
from synthtune.core.plots import write_csv
from synthtune.model.formats import format_splits, length_histogram, manifest

log = logging.getLogger("stages.format")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "train", "prepared", "base", "out", "metrics", "plots")
    tokenizer = load_tokenizer(args.base, params.model.trust_remote_code)
    inputs = {"train": args.train, "val": args.prepared / "val.jsonl", "test": args.prepared / "test.jsonl"}
    result = format_splits({split: read_jsonl(path, allow_empty=split != "train") for split, path in inputs.items()},
                           tokenizer, params.format)
    for split, rows in result.rows.items():
        write_jsonl(args.out / f"{split}.jsonl", rows)
    write_json(args.out / "format.json", manifest(params.format, tokenizer, result.intents))
    write_csv(args.plots / "lengths.csv", length_histogram(result.lengths, params.format.max_length))
    write_json(args.metrics, result.metrics)
    log.info("formatted (%s): %s", params.format.template, result.metrics)


if __name__ == "__main__":
    run_stage(main)
