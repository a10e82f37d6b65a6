"""Stage `predict`: teacher-forced batched generation on the test split, base and tuned models.

Reads:  data/formatted/test.jsonl, models/base, models/tuned, params [model, predict]
Writes: data/predictions/{base,tuned}.jsonl ({"id": "<example>:<turn>", "output": ...}), metrics/predict.json
Run:    python -m stages.predict data/formatted/test.jsonl models/base models/tuned data/predictions metrics/predict.json
"""
import argparse
import logging
import time
from pathlib import Path

from lib.cli import run_stage
from lib.config import load_params
from lib.errors import InputError
from lib.generation import eval_examples, predict_dialogue_turns
from lib.io import read_jsonl, write_json, write_jsonl
from lib.modeling import load_base, load_tuned

log = logging.getLogger("stages.predict")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test", type=Path)
    parser.add_argument("base", type=Path)
    parser.add_argument("tuned", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
    examples = eval_examples(read_jsonl(args.test, allow_empty=True), params.predict.max_dialogues)
    if not examples:
        raise InputError(f"{args.test}: the test split is empty; nothing to predict")
    loaders = {"base": lambda: load_base(args.base, params.model.trust_remote_code),
               "tuned": lambda: load_tuned(args.base, args.tuned, params.model.trust_remote_code)}
    metrics = {}
    for name, load in loaders.items():
        model, tokenizer = load()
        started = time.perf_counter()
        rows = predict_dialogue_turns(model, tokenizer, examples, batch_size=params.predict.batch_size,
                                      max_new_tokens=params.predict.max_new_tokens)
        metrics[name] = {"turns": len(rows), "seconds": round(time.perf_counter() - started, 1)}
        write_jsonl(args.out / f"{name}.jsonl", rows)
    write_json(args.metrics, metrics)
    log.info("predicted: %s", metrics)


if __name__ == "__main__":
    run_stage(main)
