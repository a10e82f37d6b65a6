"""RAG benchmark (the David & Goliath method, improved): chunk, retrieve, answer, score.

Documents (md, txt, pdf: synthtune.text.documents) are chunked into windows of the base model's
tokens (`chunk_tokens`, `chunk_overlap`: synthtune.text.chunking.token_chunks), indexed by BM25
(bm25s), TF-IDF cosine or dense MiniLM cosine (synthtune.text.retrieval), and the top-k chunks are
the context of each question. Retrieval is done once, with the base tokenizer, so every model answers
from the same context; every retriever of `rag.retrievers` gets its own answers (prompts that two
retrievers share are generated once). Each model answers greedily; `cosine` is the similarity of
answer and reference embeddings (synthtune/evaluate/metric_modules/cosine: MiniLM by default, as the
seed's answer cosine; or TF-IDF with IDF fitted on the chunks).

`hit_at_k`: the retrieved chunks of the question's document, together, contain its evidence
sentence (its character span in the document lies inside the union of their spans). It
separates retrieval failures from generation failures, which the seed benchmark could not;
`cosine_given_hit` is the answer cosine over the questions whose retrieval hit. Every retriever
is measured (`hit_at_k_<r>`, `cosine_<r>`, `cosine_given_hit_<r>`); `rag.retriever` names the one
whose figures are also the unsuffixed headline keys.
"""
from __future__ import annotations

import json
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
    retrieved: dict[str, list[dict]]   # retriever -> per question: id, reference, hit, messages (the prompt)
    metrics: dict                      # hit_at_k of every retriever
    headline: str                      # rag.retriever: whose figures are the unsuffixed keys

    @property
    def rows(self) -> list[dict]:
        return self.retrieved[self.headline]

    def prompts(self) -> list[list[dict]]:
        """Every distinct prompt over all retrievers, in first-seen order: two retrievers that return
        the same chunks for a question share one generation (greedy decoding gives the same answer)."""
        seen: dict[str, list[dict]] = {}
        for rows in self.retrieved.values():
            for row in rows:
                seen.setdefault(_prompt_key(row), row["messages"])
        return list(seen.values())

    def answers_by_retriever(self, answers: Sequence[str]) -> dict[str, list[str]]:
        """The answers to `prompts()` laid out per retriever and question."""
        by_key = {_prompt_key({"messages": m}): a for m, a in zip(self.prompts(), answers, strict=True)}
        return {kind: [by_key[_prompt_key(row)] for row in rows] for kind, rows in self.retrieved.items()}


def _prompt_key(row: dict) -> str:
    return json.dumps(row["messages"], sort_keys=True)


def _prompt(question: str, retrieved: Sequence[dict]) -> list[dict]:
    return [{"role": "system", "content": CONTEXT_PROMPT.format(context="\n\n".join(c["text"] for c in retrieved))},
            {"role": "user", "content": question}]


def build_benchmark(docs: dict[str, str], questions: list[dict], tokenizer, params: RagParams) -> Benchmark:
    """Chunk every document and retrieve top-k with each of `params.retrievers`; each retriever's
    chunks make the prompts its answers are scored on."""
    if not questions:
        raise InputError("rag questions: the file holds no questions")
    chunks = [c for name, text in docs.items()
              for c in token_chunks(name, text, tokenizer, params.chunk_tokens, params.chunk_overlap, key="rag.")]
    spans = [evidence_span(docs, q) for q in questions]
    texts, queries = [c["text"] for c in chunks], [q["question"] for q in questions]
    retrieved, metrics = {}, {}
    for kind in params.retrievers:
        options = {"embedder": params.dense_embedder, "key": "rag.dense_embedder"} if kind == "dense" else {}
        tops = make_retriever(kind, texts, **options).search(queries, params.top_k)
        rows = []
        for question, span, top in zip(questions, spans, tops):
            got = [chunks[i] for i in top]
            rows.append({"id": question["id"], "question": question["question"], "reference": question["answer"],
                         "hit": is_hit(span, question["doc"], got), "messages": _prompt(question["question"], got)})
        retrieved[kind] = rows
        metrics[f"hit_at_k_{kind}"] = round(float(np.mean([r["hit"] for r in rows])), 4)
    return Benchmark(chunks, retrieved, metrics, params.retriever)


def _answer_scores(rows: list[dict], answers: list[str], embedder: str, corpus: list[str]) -> tuple[dict, list[float]]:
    sims = cosine_scores(answers, [r["reference"] for r in rows], embedder, corpus=corpus, key="rag.embedder")
    hit_sims = [s for s, r in zip(sims, rows) if r["hit"]]
    return {"cosine": round(float(np.mean(sims)), 4), "cosine_median": round(float(np.median(sims)), 4),
            "cosine_given_hit": round(float(np.mean(hit_sims)), 4) if hit_sims else 0.0}, sims


def score_answers(bench: Benchmark, answers: dict[str, list[str]] | list[str],
                  embedder: str = "tfidf") -> tuple[dict, list[float]]:
    """({cosine, cosine_median, cosine_given_hit, hit_at_k, questions, hit_at_k_<retriever>...,
    cosine_<retriever>, cosine_given_hit_<retriever>...}, the headline retriever's per-question cosines).

    `answers`: per retriever (`answers_by_retriever`), or one list for the headline retriever's prompts.
    """
    if not isinstance(answers, dict):
        answers = {bench.headline: list(answers)}
    corpus = [c["text"] for c in bench.chunks]
    headline, sims = _answer_scores(bench.rows, answers[bench.headline], embedder, corpus)
    result = {**headline, "hit_at_k": round(float(np.mean([r["hit"] for r in bench.rows])), 4),
              "questions": len(bench.rows), **bench.metrics}
    for kind, kind_answers in answers.items():
        scores, _ = _answer_scores(bench.retrieved[kind], kind_answers, embedder, corpus)
        result[f"cosine_{kind}"] = scores["cosine"]
        result[f"cosine_given_hit_{kind}"] = scores["cosine_given_hit"]
    return result, sims
