"""Stage `score`: the scorecard of base, tuned and majority-class baseline on the test turns.

Reads:  data/formatted/{train,test}.jsonl, data/predictions/{base,tuned}.jsonl, data/seeds/graphs,
        params [predict.max_dialogues]
Writes: metrics/score.json ({model: {metric: value}}), plots/score/confusion.csv (tuned intents)
Run:    python -m stages.score data/formatted data/predictions data/seeds/graphs metrics/score.json plots/score
"""
import argparse
import logging
from pathlib import Path

from lib.cli import run_stage
from lib.config import load_params
from lib.generation import eval_examples
from lib.io import read_jsonl, write_json
from lib.plots import write_csv
from lib.scoring import confusion_rows, known_intents, majority_predictions, references, score_turns

log = logging.getLogger("stages.score")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("formatted", type=Path)
    parser.add_argument("predictions", type=Path)
    parser.add_argument("graphs", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("plots", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
    refs = references(eval_examples(read_jsonl(args.formatted / "test.jsonl"), params.predict.max_dialogues))
    intents = known_intents(args.graphs)
    predictions = {name: read_jsonl(args.predictions / f"{name}.jsonl") for name in ("base", "tuned")}
    predictions["majority"] = majority_predictions(read_jsonl(args.formatted / "train.jsonl"), refs)
    scorecard = {name: score_turns(refs, rows, intents, str(args.predictions / f"{name}.jsonl"))
                 for name, rows in predictions.items()}
    write_json(args.metrics, scorecard)
    write_csv(args.plots / "confusion.csv", confusion_rows(refs, predictions["tuned"]))
    log.info("scorecard: %s", scorecard)


if __name__ == "__main__":
    run_stage(main)
