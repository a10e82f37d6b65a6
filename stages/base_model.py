"""Stage `base_model`: build the offline `tiny` model on the selected pool, or pin a hub model.

Reads:  data/selected/train.jsonl, params [seed, model]
Writes: models/base (tokenizer + safetensors weights + manifest.json), metrics/base_model.json
Run:    python -m stages.base_model data/selected/train.jsonl models/base metrics/base_model.json
"""
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.core.io import read_jsonl, write_json
from synthtune.model.base_model import build_tiny_base, resolve_hub_model
from synthtune.model.formats import pretraining_corpus

log = logging.getLogger("stages.base_model")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "pool", "out", "metrics")
    if params.model.name != "tiny":
        metrics = resolve_hub_model(args.out, params.model)
    else:
        pool = [r for r in read_jsonl(args.pool) if r.get("messages")]
        tokenizer_texts, pretrain_texts = pretraining_corpus(pool, params.seed)
        metrics = build_tiny_base(tokenizer_texts, pretrain_texts, args.out, params.model, params.seed)
    write_json(args.metrics, metrics)
    log.info("base model: %s", metrics)


if __name__ == "__main__":
    run_stage(main)
