"""RAG benchmark (the David & Goliath method, improved): chunk, retrieve, answer, score.

Documents (md, txt, pdf: synthtune.text.documents) are chunked into windows of the base model's
tokens (`chunk_tokens`, `chunk_overlap`: synthtune.text.chunking.token_chunks), indexed by BM25
(bm25s) or TF-IDF cosine (synthtune.text.retrieval), and the top-k chunks are the context of each
question. Retrieval is done once, with the base tokenizer, so every model answers from the same
context. Each model answers greedily; `cosine` is the similarity of answer and reference embeddings
(synthtune/evaluate/metric_modules/cosine: TF-IDF with IDF fitted on the chunks, or a
sentence-transformers model).

`hit_at_k`: the retrieved chunks of the question's document, together, contain its evidence
sentence (its character span in the document lies inside the union of their spans). It
separates retrieval failures from generation failures, which the seed benchmark could not;
`cosine_given_hit` is the answer cosine over the questions whose retrieval hit. Both retrievers
are measured on every run (`hit_at_k_bm25`, `hit_at_k_tfidf`); `rag.retriever` picks the one
whose chunks the models read.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthtune.core.config import RagParams
from synthtune.core.errors import InputError
from synthtune.evaluate.metrics.text import cosine_scores
from synthtune.text import documents
from synthtune.text.chunking import token_chunks
from synthtune.text.retrieval import make_retriever

CONTEXT_PROMPT = "Use the following pieces of context to answer the question at the end.\n\n{context}"
MEASURED = ("bm25", "tfidf")        # retrievers measured on every run (hit_at_k_<name>), in metrics order


def load_documents(doc_dir: str | Path) -> dict[str, str]:
    """{name: text} of the benchmark's documents (synthtune.text.documents: md, txt, pdf), named by
    their path under `doc_dir`. An unreadable document is an error: its questions could not be asked."""
    files, rejects = documents.load_documents(doc_dir)
    if rejects:
        raise InputError(f"{rejects[0]['file']}: {rejects[0]['reason']}")
    return {documents.document_name(file, doc_dir): text for file, text in files.items()}


def evidence_span(docs: dict[str, str], question: dict) -> tuple[int, int]:
    text = docs.get(question["doc"])
    if text is None:
        raise InputError(f"rag question {question['id']}: unknown document {question['doc']!r}")
    start = text.find(question["evidence"])
    if start < 0:
        raise InputError(f"rag question {question['id']}: its evidence is not a verbatim passage of {question['doc']}")
    return start, start + len(question["evidence"])


def is_hit(span: tuple[int, int], doc: str, retrieved: Sequence[dict]) -> bool:
    """Whether the retrieved chunks of `doc` together cover the character span."""
    covered = span[0]
    for chunk in sorted((c for c in retrieved if c["doc"] == doc), key=lambda c: c["start"]):
        if chunk["start"] <= covered < chunk["end"]:
            covered = chunk["end"]
    return covered >= span[1]


@dataclass
class Benchmark:
    chunks: list[dict]
    rows: list[dict]            # per question: id, reference, hit, messages (the prompt)
    metrics: dict               # hit_at_k of every retriever


def build_benchmark(docs: dict[str, str], questions: list[dict], tokenizer, params: RagParams) -> Benchmark:
    """Chunk every document, retrieve top-k with each retriever; prompts use `params.retriever`'s chunks."""
    if not questions:
        raise InputError("rag questions: the file holds no questions")
    chunks = [c for name, text in docs.items()
              for c in token_chunks(name, text, tokenizer, params.chunk_tokens, params.chunk_overlap, key="rag.")]
    spans = [evidence_span(docs, q) for q in questions]
    texts, queries = [c["text"] for c in chunks], [q["question"] for q in questions]
    hits, tops = {}, {}
    for kind in MEASURED:
        tops[kind] = make_retriever(kind, texts).search(queries, params.top_k)
        hits[kind] = [is_hit(span, q["doc"], [chunks[i] for i in top])
                      for q, span, top in zip(questions, spans, tops[kind])]
    rows = []
    for n, question in enumerate(questions):
        retrieved = [chunks[i] for i in tops[params.retriever][n]]
        rows.append({
            "id": question["id"], "question": question["question"], "reference": question["answer"],
            "hit": hits[params.retriever][n],
            "messages": [{"role": "system", "content": CONTEXT_PROMPT.format(
                context="\n\n".join(c["text"] for c in retrieved))},
                {"role": "user", "content": question["question"]}],
        })
    metrics = {f"hit_at_k_{kind}": round(float(np.mean(hits[kind])), 4) for kind in MEASURED}
    return Benchmark(chunks, rows, metrics)


def score_answers(bench: Benchmark, answers: list[str], embedder: str = "tfidf") -> tuple[dict, list[float]]:
    """({cosine, cosine_median, cosine_given_hit, hit_at_k, hit_at_k_<retriever>..., questions}, per-question cosines)."""
    sims = cosine_scores(answers, [r["reference"] for r in bench.rows], embedder,
                         corpus=[c["text"] for c in bench.chunks])
    hit_sims = [s for s, r in zip(sims, bench.rows) if r["hit"]]
    result = {"cosine": round(float(np.mean(sims)), 4), "cosine_median": round(float(np.median(sims)), 4),
              "cosine_given_hit": round(float(np.mean(hit_sims)), 4) if hit_sims else 0.0,
              "hit_at_k": round(float(np.mean([r["hit"] for r in bench.rows])), 4), "questions": len(bench.rows),
              **bench.metrics}
    return result, sims
