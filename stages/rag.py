"""Stage `rag`: the retrieval-augmented QA benchmark, every model side by side on the same context.

Reads:  data/seeds/docs, data/seeds/rag_questions.jsonl, models/base, models/tuned,
        params [seed, model, rag, predict.backend/models/adapters/openai]
Writes: metrics/rag.json ({model: {cosine, hit_at_k, cosine_<retriever>, ...}}), plots/rag/chunks.csv (chunk lengths),
        plots/rag/chunk_lengths.png (histogram), plots/rag/cosine.png (answer cosine per model)
Run:    python -m stages.rag data/seeds/docs data/seeds/rag_questions.jsonl models/base models/tuned metrics/rag.json plots/rag
"""
import logging

from synthtune.core.cli import run_stage, stage
from synthtune.evaluate.predict import model_roster, open_backend
from synthtune.core.io import read_jsonl, write_json
from synthtune.model.base_model import load_tokenizer
from synthtune.core.plots import box_plot, histogram, write_csv
from synthtune.evaluate.rag import build_benchmark, load_documents, score_answers

log = logging.getLogger("stages.rag")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "docs", "questions", "base", "tuned", "metrics", "plots")
    trust = params.model.trust_remote_code
    bench = build_benchmark(load_documents(args.docs), read_jsonl(args.questions, allow_empty=True),
                            load_tokenizer(args.base, trust), params.rag)
    results, cosines = {}, {}
    for spec in model_roster(params.predict, args.tuned):
        with open_backend(spec, args.base, params.predict.backend, seed=params.seed, trust_remote_code=trust,
                          dtype=params.model.dtype) as backend:
            answers = backend.generate(bench.prompts(), params.rag.generation())
        results[spec.name], cosines[spec.name] = score_answers(bench, bench.answers_by_retriever(answers),
                                                               params.rag.embedder)
    write_json(args.metrics, results)
    write_csv(args.plots / "chunks.csv", [{"chunk": i, "tokens": c["tokens"]} for i, c in enumerate(bench.chunks)])
    histogram(args.plots / "chunk_lengths.png", [c["tokens"] for c in bench.chunks], "chunk lengths", "tokens")
    box_plot(args.plots / "cosine.png", cosines, "RAG answer cosine to the reference", "cosine")
    log.info("rag: %s", results)


if __name__ == "__main__":
    run_stage(main)
