"""Stage `export`: the tuned model as one folder a colleague or a server loads, with its model card.

Reads:  models/base, models/tuned, data/formatted/val.jsonl (the probe rows of the merge check),
        metrics/ (generate/<source>, prepare, select, format, train, score, rag: the card's figures),
        params [model, sources, teacher, format, train, export, cards]
Writes: models/merged (safetensors in export.dtype, tokenizer, chat template, format.json and the
        model card README.md), metrics/export.json (the merge check's logit differences, size)
Run:    python -m stages.export models/base models/tuned data/formatted/val.jsonl metrics models/merged metrics/export.json
"""
import json
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.core.io import atomic_open, read_jsonl, write_json
from synthtune.handover.export import export_merged
from synthtune.handover.model_card import model_card
from synthtune.handover.run_files import RunMetrics
from synthtune.model.base_model import MANIFEST

log = logging.getLogger("stages.export")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "base", "tuned", "val", "run_metrics", "out", "metrics")
    run = RunMetrics(args.run_metrics)
    run.stage("score")        # fail before the merge when the card could not be written anyway
    metrics = export_merged(args.base, args.tuned, read_jsonl(args.val, allow_empty=True), args.out, params.export)
    manifest = json.loads((args.base / MANIFEST).read_text(encoding="utf-8"))
    with atomic_open(args.out / "README.md") as card:
        card.write(model_card(params, run, manifest, metrics))
    write_json(args.metrics, metrics)
    log.info("exported %s to %s: %s", args.tuned, args.out, metrics)


if __name__ == "__main__":
    run_stage(main)
