"""Stage `predict`: teacher-forced generation on the test split and the API prompts, every model.

Models: predict.models (base, tuned), predict.adapters, predict.openai endpoints; backend hf | vllm.
Reads:  data/formatted/{test,val}.jsonl, the API prompts (params api.prompts: .jsonl or .csv),
        models/base, models/tuned, params [seed, model, predict, api.prompts]
Writes: data/predictions/<model>.jsonl ({"id": "<example>:<turn>", "output"}), data/predictions/api/<model>.jsonl,
        data/predictions/perplexity.json ({model: {perplexity, val_tokens}}), metrics/predict.json
Run:    python -m stages.predict data/formatted data/seeds/api_prompts.jsonl models/base models/tuned data/predictions metrics/predict.json
"""
import logging
import time

from synthtune.core.cli import run_stage, stage
from synthtune.model.precision import resolve_dtype
from synthtune.evaluate.predict import eval_examples, model_roster, open_backend, predict_model, require_turns
from synthtune.core.io import read_jsonl, write_json, write_jsonl
from synthtune.evaluate.metrics.api_match import load_api_prompts

log = logging.getLogger("stages.predict")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "formatted", "api_prompts", "base", "tuned", "out", "metrics")
    test_file = args.formatted / "test.jsonl"
    examples = eval_examples(read_jsonl(test_file, allow_empty=True), params.predict.max_dialogues)
    require_turns(examples, test_file)
    val = read_jsonl(args.formatted / "val.jsonl", allow_empty=True)
    api_prompts = load_api_prompts(args.api_prompts)
    metrics, perplexity = {}, {}
    for spec in model_roster(params.predict, args.tuned):
        started = time.perf_counter()
        with open_backend(spec, args.base, params.predict.backend, seed=params.seed,
                          trust_remote_code=params.model.trust_remote_code, dtype=params.model.dtype) as backend:
            rows, api_rows, stats = predict_model(backend, examples, api_prompts, val, params.predict)
        write_jsonl(args.out / f"{spec.name}.jsonl", rows)
        write_jsonl(args.out / "api" / f"{spec.name}.jsonl", api_rows)
        perplexity[spec.name] = {k: stats[k] for k in ("perplexity", "val_tokens") if k in stats}
        metrics[spec.name] = {**stats, "dtype": resolve_dtype(params.model.dtype),
                              "seconds": round(time.perf_counter() - started, 1)}
    write_json(args.out / "perplexity.json", perplexity)
    write_json(args.metrics, metrics)
    log.info("predicted: %s", metrics)


if __name__ == "__main__":
    run_stage(main)
