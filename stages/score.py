"""Stage `score`: the scorecard of every predicted model and the majority-class baseline.

Reads:  data/formatted/{train,test}.jsonl, data/predictions (<model>.jsonl, api/, perplexity.json),
        data/seeds/graphs, the API documents and prompts (params api.docs, api.prompts),
        params [predict.max_dialogues, api, score]
Writes: metrics/score.json ({model: {metric: value}}), plots/score/confusion.csv (intents of
        score.confusion_model), plots/score/cosine.png (reply cosine per model, box plot)
Run:    python -m stages.score data/formatted data/predictions data/seeds/graphs data/seeds/api data/seeds/api_prompts.jsonl metrics/score.json plots/score
"""
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.evaluate.predict import eval_examples
from synthtune.core.io import read_jsonl, write_json
from synthtune.core.plots import box_plot, write_csv
from synthtune.evaluate.metrics.api_match import load_api_prompts
from synthtune.evaluate.scorecard import build_scorecard

log = logging.getLogger("stages.score")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "formatted", "predictions", "graphs", "api_docs", "api_prompts", "metrics", "plots")
    test_file = args.formatted / "test.jsonl"
    test = eval_examples(read_jsonl(test_file, allow_empty=True), params.predict.max_dialogues)
    scorecard, cosines, confusion = build_scorecard(
        test, read_jsonl(args.formatted / "train.jsonl", allow_empty=True), args.predictions, args.graphs,
        args.api_docs, load_api_prompts(args.api_prompts), params, test_source=str(test_file))
    write_json(args.metrics, scorecard)
    write_csv(args.plots / "confusion.csv", confusion)
    box_plot(args.plots / "cosine.png", cosines, "reply cosine to the gold reply", "cosine")
    log.info("scorecard: %s", {m: {k: v for k, v in c.items() if "@" not in k} for m, c in scorecard.items()})


if __name__ == "__main__":
    run_stage(main)
