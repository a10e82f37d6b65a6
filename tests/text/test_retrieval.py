"""Retrieval: BM25, TF-IDF, dense (MiniLM), the registry, rankings and their tie-breaks, the catalog retriever."""
from __future__ import annotations

import numpy as np
import pytest

from synthtune.text.retrieval import (RETRIEVERS, Bm25Index, CatalogRetriever, DenseIndex, Retriever, TfidfIndex,
                                      make_retriever, rank, register_retriever)

TEXTS = ["knife skills: a brunoise is a fine dice", "bread needs yeast and a long rise", "store rice in the fridge"]


def test_every_retriever_finds_the_obvious_chunk():
    texts = TEXTS
    for kind in ("bm25", "tfidf", "dense"):
        assert make_retriever(kind, texts).search(["how fine is a brunoise dice?", "what makes bread rise"], 1).tolist() == [[0], [1]]


def test_registry_and_score_vectors():
    assert RETRIEVERS == {"bm25": Bm25Index, "tfidf": TfidfIndex, "dense": DenseIndex}
    for kind in ("bm25", "tfidf"):   # lexical: a query of stop words scores nothing
        scores = make_retriever(kind, TEXTS).scores(["bread rise", "the and of"])
        assert scores.shape == (2, 3) and scores[0].argmax() == 1
        assert not scores[1].any()                       # stop words only: nothing matches
    with pytest.raises(ValueError, match="registered twice"):
        register_retriever("bm25")(Bm25Index)


def test_a_new_retriever_is_one_registered_class():
    @register_retriever("by_length")
    class ByLength(Retriever):
        def __init__(self, texts):
            self.lengths = np.array([len(t) for t in texts], dtype=float)

        def scores(self, queries):
            return np.tile(self.lengths, (len(queries), 1))

    try:
        assert make_retriever("by_length", TEXTS).search(["q"], 2).tolist() == [[0, 1]]
    finally:
        del RETRIEVERS["by_length"]


def test_ties_keep_text_order_and_bm25_rounds_to_6_decimals():
    assert rank(np.array([0.5, 1.0, 0.5, 1.0])).tolist() == [1, 3, 0, 2]
    assert rank(np.array([1.0000001, 1.0, 2.0]), decimals=6).tolist() == [2, 0, 1]      # rounded: a tie
    assert rank(np.array([1.0000001, 1.0, 2.0])).tolist() == [2, 0, 1]
    assert rank(np.array([1.0, 1.0000001, 2.0]), decimals=6).tolist() == [2, 0, 1]
    assert rank(np.array([1.0, 1.0000001, 2.0])).tolist() == [2, 1, 0]
    same = Bm25Index(["salt pepper", "salt pepper", "sugar"])
    assert same.search(["salt"], 3).tolist() == [[0, 1, 2]]


def test_catalog_ranking_ignores_catalog_order_and_breaks_ties_by_id():
    items = [{"id": "c", "text": "tomato soup"}, {"id": "a", "text": "tomato soup"},
             {"id": "b", "text": "garlic bread"}, {"id": "d", "text": "cold tomato salad with garlic"}]
    forward = CatalogRetriever(items, lambda it: it["text"])
    backward = CatalogRetriever(items[::-1], lambda it: it["text"])
    for query in ("tomato soup", "garlic", "the of", "unknownword"):
        ids = [it["id"] for it in forward.ranked(query)]
        assert ids == [it["id"] for it in backward.ranked(query)]
        assert sorted(ids) == ["a", "b", "c", "d"]
    assert [it["id"] for it in forward.ranked("tomato soup")][:2] == ["a", "c"]       # equal texts: by id
    assert [it["id"] for it in forward.ranked("the of")] == ["a", "b", "c", "d"]      # no match: id order
    assert [it["id"] for it in forward.ranked("garlic", exclude="b")] == ["d", "a", "c"]
    assert [it["id"] for it in forward.items] == ["a", "b", "c", "d"]


def test_dense_retrieval_matches_meaning_not_words():
    """MiniLM cosine: a paraphrase with no content word in common still finds its text, where the
    lexical retrievers score nothing."""
    query = ["how small should the cubes be when I chop vegetables very finely?"]
    dense = make_retriever("dense", TEXTS)
    scores = dense.scores(query)
    assert scores.shape == (1, 3) and dense.search(query, 1).tolist() == [[0]]
    assert -1.0 <= scores.min() and scores.max() <= 1.0 + 1e-6
