"""RAG benchmark (the David & Goliath method, improved): chunk, retrieve, answer, score.

Documents are chunked by tokens of the base model's tokenizer (`chunk_tokens`, `chunk_overlap`),
indexed by BM25 (bm25s) or TF-IDF cosine, and the top-k chunks are the context of each question.
Retrieval is done once, with the base tokenizer, so every model answers from the same context.
Each model answers greedily; `cosine` is the similarity of answer and reference embeddings
(lib/metric_modules/cosine: TF-IDF with IDF fitted on the chunks, or a sentence-transformers model).

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
from synthtune.core.errors import InputError, ParamsError
from synthtune.evaluate.metrics.text import cosine_scores

CONTEXT_PROMPT = "Use the following pieces of context to answer the question at the end.\n\n{context}"
RETRIEVERS = ("bm25", "tfidf")


def load_documents(doc_dir: Path) -> dict[str, str]:
    docs = {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(doc_dir).glob("*.md"))}
    docs.update({p.name: p.read_text(encoding="utf-8") for p in sorted(Path(doc_dir).glob("*.txt"))})
    if not docs:
        raise InputError(f"{doc_dir}: no .md or .txt documents found")
    return docs


def chunk_document(name: str, text: str, tokenizer, size: int, overlap: int) -> list[dict]:
    """Token windows of `size` with `overlap`, cut back to the original text through offsets."""
    if overlap >= size:
        raise ParamsError(f"params.yaml: rag.chunk_overlap ({overlap}) must be smaller than rag.chunk_tokens ({size})")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    chunks, start = [], 0
    while start < len(offsets):
        end = min(start + size, len(offsets))
        chunks.append({"doc": name, "start": offsets[start][0], "end": offsets[end - 1][1],
                       "text": text[offsets[start][0]:offsets[end - 1][1]], "tokens": end - start})
        if end == len(offsets):
            break
        start = end - overlap
    return chunks


class TfidfIndex:
    """Cosine retrieval over TF-IDF vectors (word uni+bigrams, English stop words removed)."""

    def __init__(self, texts: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english")
        self.matrix = self.vectorizer.fit_transform(texts)

    def search(self, queries: Sequence[str], k: int) -> np.ndarray:
        scores = (self.vectorizer.transform(queries) @ self.matrix.T).toarray()
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]


class Bm25Index:
    """BM25 (bm25s, Lucene scoring, English stop words); ties go to the earlier chunk."""

    def __init__(self, texts: Sequence[str]):
        import bm25s

        self.bm25s, self.n = bm25s, len(texts)
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False), show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> np.ndarray:
        rows = []
        for query in queries:
            scores = np.zeros(self.n)
            tokens = self.bm25s.tokenize([query], stopwords="en", show_progress=False)
            if tokens.ids and tokens.ids[0]:
                docs, values = self.index.retrieve(tokens, k=self.n, show_progress=False)
                scores[docs[0]] = values[0]
            rows.append(np.argsort(-np.round(scores, 6), kind="stable")[:k])
        return np.array(rows)


def make_index(kind: str, texts: Sequence[str]):
    return {"bm25": Bm25Index, "tfidf": TfidfIndex}[kind](texts)


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
              for c in chunk_document(name, text, tokenizer, params.chunk_tokens, params.chunk_overlap)]
    spans = [evidence_span(docs, q) for q in questions]
    texts, queries = [c["text"] for c in chunks], [q["question"] for q in questions]
    hits, tops = {}, {}
    for kind in RETRIEVERS:
        tops[kind] = make_index(kind, texts).search(queries, params.top_k)
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
    metrics = {f"hit_at_k_{kind}": round(float(np.mean(hits[kind])), 4) for kind in RETRIEVERS}
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
