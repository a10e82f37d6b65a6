"""Stage `format`: render records as training conversations and fit them to the token budget.

Reads:  data/selected/train.jsonl, data/prepared/{val,test}.jsonl, models/base (tokenizer), params [format, model]
Writes: data/formatted/{train,val,test}.jsonl, metrics/format.json
Run:    python -m stages.format data/selected/train.jsonl data/prepared models/base data/formatted metrics/format.json
"""
import argparse
import logging
from pathlib import Path

from lib.cli import run_stage
from lib.config import load_params
from lib.io import read_jsonl, write_json, write_jsonl
from lib.modeling import load_tokenizer
from lib.templates import format_split

log = logging.getLogger("stages.format")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", type=Path)
    parser.add_argument("prepared", type=Path)
    parser.add_argument("base", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
    tokenizer = load_tokenizer(args.base, params.model.trust_remote_code)
    inputs = {"train": args.train, "val": args.prepared / "val.jsonl", "test": args.prepared / "test.jsonl"}
    metrics = {}
    for split, path in inputs.items():
        examples, counts = format_split(read_jsonl(path, allow_empty=split != "train"), tokenizer, params.format)
        write_jsonl(args.out / f"{split}.jsonl", examples)
        metrics.update({f"{split}_{key}": value for key, value in counts.items()})
    write_json(args.metrics, metrics)
    log.info("formatted: %s", metrics)


if __name__ == "__main__":
    run_stage(main)
