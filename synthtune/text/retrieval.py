"""Retrieval: BM25, TF-IDF and dense indexes, a registry of retrievers by name, the catalog retriever.

Every retriever is built on a list of texts and answers `scores(queries)` (one row of scores per
query, one column per text) and `search(queries, k)` (the top-k text indices per query). Ranking
is a stable sort on the negated scores, so ties go to the earlier text; BM25 scores are rounded
to 6 decimals first (bm25s scores in float32: equal-looking scores must tie, whatever the order
of the summation).

* `Bm25Index` (bm25s, Lucene scoring, English stop words removed). A query of stop words only
  matches nothing: every score is 0 and the ranking is the text order.
* `TfidfIndex`: cosine of TF-IDF vectors (sublinear tf, word uni+bigrams, English stop words).
* `DenseIndex`: cosine of sentence-transformers embeddings (synthtune.text.embeddings; MiniLM by
  default, the embedder David & Goliath retrieves with), vectors cached like selection's. Scores
  are rounded to 5 decimals before ranking so float noise between machines does not reorder ties.
* `RETRIEVERS` = {"bm25": Bm25Index, "tfidf": TfidfIndex, "dense": DenseIndex};
  `make_retriever(kind, texts, **options)` (options go to the class: `embedder` for dense). A new
  retriever is a class with `scores(queries)` registered with `@register_retriever("<name>")`.
* `CatalogRetriever`: what the dialogue simulator shows as search results. It ranks a catalog
  for a query with BM25 over one text per item; the items are sorted by id first, so ties are
  broken by item id and the ranking never depends on catalog order. Rankings are cached per query.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

RETRIEVERS: dict[str, type] = {}


def register_retriever(name: str):
    def add(cls):
        if name in RETRIEVERS:
            raise ValueError(f"retriever {name!r} is registered twice")
        RETRIEVERS[name] = cls
        return cls
    return add


def make_retriever(kind: str, texts: Sequence[str], **options):
    return RETRIEVERS[kind](texts, **options)


def rank(scores: np.ndarray, decimals: int | None = None) -> np.ndarray:
    """Indices best first along the last axis; ties keep index order (scores rounded first if asked)."""
    scores = np.asarray(scores)
    return np.argsort(-(np.round(scores, decimals) if decimals is not None else scores), axis=-1, kind="stable")


class Retriever:
    """Base: subclasses set `decimals` (rounding before ranking, None: exact) and define `scores`."""

    decimals: int | None = None

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def search(self, queries: Sequence[str], k: int) -> np.ndarray:
        """(queries, k) indices of the best texts per query, best first."""
        return rank(self.scores(queries), self.decimals)[:, :k]


@register_retriever("bm25")
class Bm25Index(Retriever):
    """BM25 (bm25s, Lucene scoring, English stop words); ties go to the earlier text."""

    decimals = 6

    def __init__(self, texts: Sequence[str]):
        import bm25s

        self.bm25s, self.n = bm25s, len(texts)
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False), show_progress=False)

    def query_scores(self, query: str) -> np.ndarray:
        """The score of every text for one query (0 where no query term occurs)."""
        scores = np.zeros(self.n)
        tokens = self.bm25s.tokenize([query], stopwords="en", show_progress=False)
        if tokens.ids and tokens.ids[0]:
            docs, values = self.index.retrieve(tokens, k=self.n, show_progress=False)
            scores[docs[0]] = values[0]
        return scores

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        return np.array([self.query_scores(q) for q in queries]).reshape(len(queries), self.n)


@register_retriever("tfidf")
class TfidfIndex(Retriever):
    """Cosine retrieval over TF-IDF vectors (word uni+bigrams, English stop words removed)."""

    def __init__(self, texts: Sequence[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), stop_words="english")
        self.matrix = self.vectorizer.fit_transform(texts)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        return (self.vectorizer.transform(queries) @ self.matrix.T).toarray()


@register_retriever("dense")
class DenseIndex(Retriever):
    """Cosine retrieval over L2-normalized sentence embeddings (`embedder`: sentence-transformers:<model>)."""

    decimals = 5

    def __init__(self, texts: Sequence[str], embedder: str = "sentence-transformers:minilm",
                 key: str = "rag.dense_embedder"):
        from synthtune.text.embeddings import embed_texts

        self.embedder, self.key = embedder, key     # key: the params key its errors name
        self.matrix, _ = embed_texts(list(texts), embedder, dims=0, seed=0, key=key)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        from synthtune.text.embeddings import embed_texts

        vectors, _ = embed_texts(list(queries), self.embedder, dims=0, seed=0, key=self.key)
        return vectors @ self.matrix.T


class CatalogRetriever:
    """BM25 over one text per catalog item; `ranked(query)` returns every item, best first."""

    def __init__(self, items: list[dict], text_of: Callable[[dict], str], id_key: str = "id"):
        self.items = sorted(items, key=lambda item: item[id_key])
        self.id_key = id_key
        self._index = Bm25Index([text_of(item) for item in self.items])
        self._cache: dict[str, list[dict]] = {}

    def ranked(self, query: str, exclude: str | None = None) -> list[dict]:
        order = self._cache.get(query)
        if order is None:     # stable over id-sorted items: ties are broken by item id
            ranked = rank(self._index.query_scores(query), self._index.decimals)
            order = self._cache[query] = [self.items[i] for i in ranked]
        return [item for item in order if item[self.id_key] != exclude]
