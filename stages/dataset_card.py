"""Stage `dataset_card`: the training data as a dataset a colleague loads, with its card.

Reads:  data/selected/train.jsonl, data/prepared/{val,test}.jsonl, metrics/ (generate/<source>,
        prepare, select, format: the card's figures), params [sources, teacher, prepare, select, format, cards]
Writes: data/dataset/{train,validation,test}.jsonl (the splits as trained and scored on) and
        data/dataset/README.md (the dataset card, `datasets.load_dataset("json", ...)`-ready)
Run:    python -m stages.dataset_card data/selected/train.jsonl data/prepared metrics data/dataset
"""
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.core.io import atomic_open, read_jsonl, write_jsonl
from synthtune.handover.dataset_card import SPLIT_FILES, dataset_card
from synthtune.handover.run_files import RunMetrics

log = logging.getLogger("stages.dataset_card")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "selected", "prepared", "run_metrics", "out")
    splits = {"train": read_jsonl(args.selected), "validation": read_jsonl(args.prepared / "val.jsonl", allow_empty=True),
              "test": read_jsonl(args.prepared / "test.jsonl", allow_empty=True)}
    card = dataset_card(params, RunMetrics(args.run_metrics), {k: len(v) for k, v in splits.items()},
                        sorted(splits["train"][0]))
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        write_jsonl(args.out / SPLIT_FILES[split], rows)
    with atomic_open(args.out / "README.md") as out:
        out.write(card)
    log.info("wrote the dataset card and %s to %s", {k: len(v) for k, v in splits.items()}, args.out)


if __name__ == "__main__":
    run_stage(main)
