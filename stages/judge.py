"""Stage `judge`: SynTOD's LLM relevance judge (0/1/2) of every predicted model's replies, validated.

Reads:  data/formatted/test.jsonl, data/predictions (<model>.jsonl), models/base (the local judge),
        params [seed, predict.max_dialogues, score.judge*, teacher (the openai judge's endpoint)]
Writes: metrics/judge.json ({model: {relevance_mean, relevance_share_0/1/2, ...}, judge: {pairwise
        accuracy, flagged}}), the judge's answer cache (persisted, like the teacher's)
Run:    python -m stages.judge data/formatted/test.jsonl data/predictions models/base metrics/judge.json
            --cache data/judge_cache
        --dry-run: print the judge requests, their tokens and estimated cost; send and write nothing
"""
import logging
from pathlib import Path

from synthtune.core.cli import run_stage, stage
from synthtune.core.io import read_jsonl, write_json
from synthtune.evaluate.judge import judged_turns, relevance
from synthtune.evaluate.predict import eval_examples
from synthtune.evaluate.scorecard import read_predictions
from synthtune.llm.teacher import ChatRequest, open_teacher

log = logging.getLogger("stages.judge")


def _options(parser) -> None:
    parser.add_argument("--cache", type=Path, default=None, help="the judge's answer cache folder")
    parser.add_argument("--dry-run", action="store_true", help="estimate the judge's requests and cost only")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "test", "predictions", "base", "metrics", options=_options)
    score = params.score
    turns = judged_turns(eval_examples(read_jsonl(args.test, allow_empty=True), params.predict.max_dialogues),
                         score.judge_max)
    predictions = {name: {row["id"]: row["output"] for row in rows}
                   for name, rows in read_predictions(args.predictions).items()}
    local = score.judge == "local"
    judge = params.teacher.model_copy(update={"model": str(args.base) if local else score.judge_model,
                                              "max_cost_usd": None if local else params.teacher.max_cost_usd})
    if args.cache is not None and not args.dry_run:
        args.cache.mkdir(parents=True, exist_ok=True)
    with open_teacher(judge, backend="hf" if local else "openai", cache_dir=args.cache,
                      dry_run=args.dry_run) as teacher:
        result = relevance(turns, predictions, teacher, ChatRequest, score.judge_min_accuracy)
        if args.dry_run:
            print(teacher.dry_run_report())
            return
        if result:
            result["judge"].update(judge_model="base (local)" if local else score.judge_model,
                                   **teacher.stats.metrics(prefix="judge_"))
    write_json(args.metrics, result)
    log.info("judge: %s", result)


if __name__ == "__main__":
    run_stage(main)
