"""Stage `rag`: the retrieval-augmented QA benchmark, base and tuned side by side.

Reads:  data/seeds/docs, data/seeds/rag_questions.jsonl, models/base, models/tuned, params [model, rag]
Writes: metrics/rag.json ({model: {cosine, hit_at_k, ...}}), plots/rag/chunks.csv (chunk lengths)
Run:    python -m stages.rag data/seeds/docs data/seeds/rag_questions.jsonl models/base models/tuned metrics/rag.json plots/rag
"""
import argparse
import logging
from pathlib import Path

from lib.cli import run_stage
from lib.config import load_params
from lib.generation import generate
from lib.io import read_jsonl, write_json
from lib.modeling import load_base, load_tuned
from lib.plots import write_csv
from lib.rag import build_benchmark, load_documents, score_answers

log = logging.getLogger("stages.rag")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("docs", type=Path)
    parser.add_argument("questions", type=Path)
    parser.add_argument("base", type=Path)
    parser.add_argument("tuned", type=Path)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("plots", type=Path)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    params = load_params(args.params)
    trust = params.model.trust_remote_code
    loaders = {"base": lambda: load_base(args.base, trust), "tuned": lambda: load_tuned(args.base, args.tuned, trust)}
    results = {}
    for name, load in loaders.items():
        model, tokenizer = load()
        chunks, index, rows = build_benchmark(load_documents(args.docs), read_jsonl(args.questions), tokenizer,
                                              params.rag)
        answers = generate(model, tokenizer, [r["messages"] for r in rows], batch_size=params.rag.batch_size,
                           max_new_tokens=params.rag.max_new_tokens)
        results[name] = score_answers(index, rows, answers)
    write_json(args.metrics, results)
    write_csv(args.plots / "chunks.csv", [{"chunk": i, "tokens": c["tokens"]} for i, c in enumerate(chunks)])
    log.info("rag: %s", results)


if __name__ == "__main__":
    run_stage(main)
