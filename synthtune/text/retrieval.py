"""Lexical retrieval over a catalog with BM25 (bm25s): the search results the simulator shows.

Dialogue generation asks one question of it: "rank the catalog for this query". The ranking is
deterministic (ties broken by item id), cached per query, and never depends on catalog order.
"""
from __future__ import annotations


class CatalogRetriever:
    """BM25 over one text per catalog item; `ranked(query)` returns every item, best first."""

    def __init__(self, items: list[dict], text_of, id_key: str = "id"):
        import bm25s

        self.items = sorted(items, key=lambda item: item[id_key])
        self.id_key = id_key
        self._bm25s = bm25s
        self._index = bm25s.BM25()
        self._index.index(bm25s.tokenize([text_of(item) for item in self.items], stopwords="en",
                                         show_progress=False), show_progress=False)
        self._cache: dict[str, list[dict]] = {}

    def ranked(self, query: str, exclude: str | None = None) -> list[dict]:
        order = self._cache.get(query)
        if order is None:
            tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
            if tokens.ids and tokens.ids[0]:
                docs, scores = self._index.retrieve(tokens, k=len(self.items), show_progress=False)
                score_of = {int(d): float(s) for d, s in zip(docs[0], scores[0])}
            else:  # a query of stopwords only matches nothing: keep catalog order
                score_of = {}
            ranked = sorted(range(len(self.items)),
                            key=lambda i: (-round(score_of.get(i, 0.0), 6), self.items[i][self.id_key]))
            order = self._cache[query] = [self.items[i] for i in ranked]
        return [item for item in order if item[self.id_key] != exclude]
