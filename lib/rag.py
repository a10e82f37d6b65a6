"""RAG benchmark (the David & Goliath method, improved): chunk, retrieve, answer, score.

Documents are chunked by the model's own tokens (size, overlap), embedded with TF-IDF
(offline default), and the top-k chunks by cosine are the context of each question. Each
model answers greedily; `cosine` is the similarity of answer and reference embeddings, and
`hit_at_k` says whether a retrieved chunk holds the question's evidence sentence: it
separates retrieval failures from generation failures, which the seed benchmark could not.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lib.config import RagParams
from lib.errors import InputError

CONTEXT_PROMPT = "Use the following pieces of context to answer the question at the end.\n\n{context}"


def load_documents(doc_dir: Path) -> dict[str, str]:
    docs = {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(doc_dir).glob("*.md"))}
    docs.update({p.name: p.read_text(encoding="utf-8") for p in sorted(Path(doc_dir).glob("*.txt"))})
    if not docs:
        raise InputError(f"{doc_dir}: no .md or .txt documents found")
    return docs


def chunk_document(name: str, text: str, tokenizer, size: int, overlap: int) -> list[dict]:
    """Token windows of `size` with `overlap`, cut back to the original text through offsets."""
    if overlap >= size:
        raise InputError(f"params.yaml: rag.chunk_overlap ({overlap}) must be smaller than rag.chunk_tokens ({size})")
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
    """Cosine retrieval over TF-IDF vectors; also the embedder for answer similarity."""

    def __init__(self, texts: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english")
        self.matrix = self.vectorizer.fit_transform(texts)

    def embed(self, texts: Sequence[str]):
        return self.vectorizer.transform(texts)

    def search(self, queries: Sequence[str], k: int) -> np.ndarray:
        scores = (self.embed(queries) @ self.matrix.T).toarray()
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]

    def cosine(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        return np.asarray(self.embed(a).multiply(self.embed(b)).sum(axis=1)).ravel()


def build_benchmark(docs: dict[str, str], questions: list[dict], tokenizer, params: RagParams):
    """Chunk, index and retrieve; returns (chunks, index, per-question retrieval rows)."""
    chunks = [c for name, text in docs.items()
              for c in chunk_document(name, text, tokenizer, params.chunk_tokens, params.chunk_overlap)]
    index = TfidfIndex([c["text"] for c in chunks])
    top = index.search([q["question"] for q in questions], params.top_k)
    rows = []
    for question, hits in zip(questions, top):
        if question["doc"] not in docs:
            raise InputError(f"rag question {question['id']}: unknown document {question['doc']!r}")
        retrieved = [chunks[i] for i in hits]
        rows.append({
            "id": question["id"], "question": question["question"], "reference": question["answer"],
            "hit": any(c["doc"] == question["doc"] and question["evidence"] in c["text"] for c in retrieved),
            "messages": [{"role": "system", "content": CONTEXT_PROMPT.format(
                context="\n\n".join(c["text"] for c in retrieved))},
                {"role": "user", "content": question["question"]}],
        })
    return chunks, index, rows


def score_answers(index: TfidfIndex, rows: list[dict], answers: list[str]) -> dict:
    sims = index.cosine(answers, [r["reference"] for r in rows])
    return {"cosine": round(float(np.mean(sims)), 4), "cosine_median": round(float(np.median(sims)), 4),
            "hit_at_k": round(float(np.mean([r["hit"] for r in rows])), 4), "questions": len(rows)}
