"""Stage `select`: choose a diverse training set from the prepared train pool, and map it.

Reads:  data/prepared/{train,val,test}.jsonl (val/test for decontamination), params [seed, select]
Writes: data/selected/train.jsonl, metrics/select.json, plots/select/{map.csv,map.png}
Run:    python -m stages.select data/prepared data/selected/train.jsonl metrics/select.json plots/select
"""
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.core.io import read_jsonl, write_json, write_jsonl
from synthtune.curate.selection import select_pool
from synthtune.curate.selection_map import write_selection_map

log = logging.getLogger("stages.select")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "prepared", "out", "metrics", "plots")
    pool = read_jsonl(args.prepared / "train.jsonl", allow_empty=True)
    eval_records = [r for split in ("val", "test")
                    for r in read_jsonl(args.prepared / f"{split}.jsonl", allow_empty=True)]
    selection = select_pool(pool, params.select, params.seed, eval_records)
    map_metrics = write_selection_map(args.plots, selection, params.select, params.seed)
    write_jsonl(args.out, selection.records)
    write_json(args.metrics, selection.metrics | map_metrics)
    log.info("selected %d of %d records", len(selection.chosen), selection.metrics["pool_records"])


if __name__ == "__main__":
    run_stage(main)
