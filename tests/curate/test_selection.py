"""Selection: quotas, strategies, clustering (k-means, community), embedders and their cache, the map."""
import csv
import json
from typing import get_args

import numpy as np
import pytest

from synthtune.core.config import SelectParams, load_params
from synthtune.core.errors import InputError, ParamsError
from synthtune.core.io import write_jsonl
from synthtune.curate.selection import (community_detection, proportional_quota, select_pool, select_records,
                           uniform_quota)
from synthtune.curate.selection_map import UMAP_MIN_POINTS, map_rows, write_selection_map

FAST = {"svd_dims": 8, "decontam_ngram": 0, "umap_map": False}


def test_quota_is_proportional_with_minimum_one():
    assert proportional_quota({0: 90, 1: 9, 2: 1}, 10) == {0: 9, 1: 1, 2: 1}


def test_uniform_quota_redistributes_what_small_clusters_cannot_take():
    assert uniform_quota({0: 2, 1: 50, 2: 50}, 30) == {0: 2, 1: 14, 2: 14}
    assert sum(uniform_quota({0: 5, 1: 5}, 30).values()) == 10


def test_selection_is_seeded(dialogues):
    params = SelectParams(n_samples=10, n_clusters=3, svd_dims=8)
    a, metrics = select_records(dialogues, params, seed=1)
    b, _ = select_records(dialogues, params, seed=1)
    assert a == b and 3 <= len(a) <= 12 and metrics["n_clusters"] == 3
    assert not any(key.startswith("fallback") for key in metrics)


def test_selection_reports_diversity(dialogues):
    params = SelectParams(n_samples=10, n_clusters=4, quota="uniform", **FAST)
    selected, metrics = select_records(dialogues, params, seed=1)
    assert metrics["selected_from_recipe_tod"] == len(selected) == 10
    assert 0 < metrics["mean_pairwise_distance"] <= 2 and metrics["cluster_size_entropy"] > 0


# ---------------------------------------------------------------------------------- bad input

def test_n_samples_larger_than_the_pool_keeps_the_pool(dialogues):
    whole, metrics = select_records(dialogues[:5], SelectParams(n_samples=10, n_clusters=3, **FAST), seed=1)
    assert len(whole) == 5 and metrics["selected_records"] == 5
    assert metrics["fallback_n_samples"] == "n_samples 10 >= 5 eligible records: kept them all"


def test_more_clusters_than_records_uses_one_per_distinct_record(dialogues):
    pool = dialogues[:6] + [dict(dialogues[0], id="same-text-other-id")]
    params = SelectParams(n_samples=3, n_clusters=100, near_dup=False, **FAST)
    selected, metrics = select_records(pool, params, seed=1)
    assert metrics["fallback_n_clusters"] == "n_clusters 100 > 6 distinct records: used 6"
    assert metrics["n_clusters"] == 6 and len(selected) == 6    # min 1 per cluster: 6 > n_samples, as in the seed


def test_a_pool_of_one_record(dialogues):
    for clustering in ("kmeans", "community"):
        params = SelectParams(n_samples=5, clustering=clustering, **FAST)
        selection = select_pool(dialogues[:1], params, seed=1)
        assert selection.records == dialogues[:1] and selection.metrics["n_clusters"] == 1
        assert "fallback_n_samples" in selection.metrics
    assert selection.metrics["fallback_community_min_size"] == "community_min_size 10 > pool of 1: used 1"
    rows, map_metrics = map_rows(selection, params.model_copy(update={"umap_map": True}), seed=1)
    assert rows == [{"x": 0.0, "y": 0.0, "cluster": 0, "source": "recipe_tod", "selected": 1}]
    assert map_metrics["map_method"] == "pca" and "too few for UMAP" in map_metrics["fallback_map"]


def test_an_empty_pool_is_a_clear_error(dialogues):
    with pytest.raises(InputError, match="training pool is empty"):
        select_records([], SelectParams(), seed=1)
    pool = [dialogues[0], dict(dialogues[0], id="copy")]
    with pytest.raises(InputError, match="all 2 pool records were removed.*select.near_dup_threshold"):
        select_records(pool, SelectParams(), seed=1, eval_records=[dialogues[0]])


def _stage(tmp_path, root, train: list[dict], select: dict):
    from stages.select import main

    params = load_params(root / "params.yaml").model_dump(mode="json")
    params["select"].update(select)
    (tmp_path / "params.yaml").write_text(json.dumps(params))      # JSON is YAML
    prepared = tmp_path / "prepared"
    for split, rows in (("train", train), ("val", []), ("test", [])):
        write_jsonl(prepared / f"{split}.jsonl", rows)
    out = tmp_path / "selected.jsonl"
    main([str(prepared), str(out), str(tmp_path / "m.json"), str(tmp_path / "plots"),
          "--params", str(tmp_path / "params.yaml")])
    return out, json.loads((tmp_path / "m.json").read_text())


def test_stage_records_fallbacks_and_rejects_an_empty_pool(tmp_path, root, dialogues):
    _, metrics = _stage(tmp_path, root, dialogues[:1], {"n_samples": 5, "n_clusters": 3, "umap_map": True})
    assert metrics["selected_records"] == 1 and metrics["map_method"] == "pca"
    assert {"fallback_n_samples", "fallback_n_clusters", "fallback_map"} <= set(metrics)
    with pytest.raises(InputError, match="training pool is empty"):
        _stage(tmp_path, root, [], {})


@pytest.mark.parametrize("strategy", get_args(SelectParams.model_fields["strategy"].annotation))
def test_every_strategy_runs_the_stage_end_to_end(tmp_path, root, dialogues, strategy):
    out, metrics = _stage(tmp_path, root, dialogues, {"strategy": strategy, "n_samples": 12, "n_clusters": 3,
                                                      "svd_dims": 8, "umap_map": False})
    selected = [json.loads(line) for line in out.read_text().splitlines()]
    assert metrics["strategy"] == strategy and metrics["selected_records"] == len(selected) > 0
    kept = metrics["pool_records"] - metrics["near_duplicates_removed"] - metrics["contaminated_removed"]
    expected = {"all": (kept, kept), "random": (12, 12), "cluster_quota": (12 - 3, 12)}[strategy]  # floor per cluster
    assert expected[0] <= len(selected) <= expected[1]
    with open(tmp_path / "plots/map.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["x", "y", "cluster", "source", "selected"]
    assert sum(int(r["selected"]) for r in rows) == len(selected)
    assert (tmp_path / "plots/map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------- clustering

def blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 16))
    points = [c + rng.normal(scale=0.5, size=(int(rng.integers(5, 40)), 16)) for c in centres]
    vectors = np.concatenate(points + [rng.normal(size=(30, 16))]).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_community_detection_matches_sentence_transformers_in_bounded_memory(monkeypatch):
    from sentence_transformers.util import community_detection as reference

    import synthtune.curate.selection

    vectors = blobs()
    for threshold, min_size in ((0.75, 10), (0.6, 5), (0.9, 3)):
        expected = sorted(sorted(c) for c in reference(vectors, threshold=threshold, min_community_size=min_size))
        assert sorted(sorted(c.tolist()) for c in community_detection(vectors, threshold, min_size)) == expected
    monkeypatch.setattr(synthtune.curate.selection, "SIMILARITY_BLOCK_BYTES", 4 * len(vectors) * 7)   # 7 rows per block
    expected = sorted(sorted(c) for c in reference(vectors, threshold=0.6, min_community_size=5))
    assert sorted(sorted(c.tolist()) for c in community_detection(vectors, 0.6, 5)) == expected


def test_community_outliers_are_dropped_or_kept(dialogues):
    base = SelectParams(n_samples=10, clustering="community", community_threshold=0.5, community_min_size=3, **FAST)
    dropped = select_pool(dialogues, base, seed=1)
    kept = select_pool(dialogues, base.model_copy(update={"community_outliers": "keep"}), seed=1)
    outliers = dropped.metrics["outliers"]
    assert 0 < outliers < len(dialogues) and kept.metrics["outliers"] == outliers
    assert (dropped.labels == -1).sum() == outliers and not set(dropped.chosen) & set(np.flatnonzero(dropped.labels < 0))
    assert (kept.labels >= 0).all() and kept.metrics["n_clusters"] == dropped.metrics["n_clusters"] + 1
    with pytest.raises(ParamsError, match=r"^select\.community_threshold: no community of >= 3 records"):
        select_pool(dialogues, base.model_copy(update={"community_threshold": 1.0}), seed=1)


# ---------------------------------------------------------------------------------- embedders

@pytest.fixture(scope="module")
def tiny_sentence_transformer(tmp_path_factory):
    """A 1-layer BERT + mean pooling, saved as a SentenceTransformer folder: loaded by path, offline."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from synthtune.curate.dedup import words

    folder = tmp_path_factory.mktemp("st")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted({w for i in range(300) for w in words(f"step {i}")})
    (folder / "bert").mkdir()
    (folder / "bert/vocab.txt").write_text("\n".join(vocab + [f"w{i}" for i in range(200)]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab) + 200, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder / "bert")
    BertTokenizerFast(vocab_file=str(folder / "bert/vocab.txt")).save_pretrained(folder / "bert")
    transformer = Transformer(str(folder / "bert"), max_seq_length=128)
    SentenceTransformer(modules=[transformer, Pooling(16, "mean")]).save(str(folder / "model"))
    return folder / "model"


def test_sentence_transformer_embeds_once_then_serves_the_cache(tmp_path, tiny_sentence_transformer):
    texts = [f"w{i} w{i + 1} step {i}" for i in range(40)]
    params = SelectParams(n_samples=10, embedder=f"sentence-transformers:{tiny_sentence_transformer}",
                          n_clusters=4, near_dup=False, **FAST)
    pool = [{"id": f"r{i}", "source": "s", "group": f"g{i}", "text": t} for i, t in enumerate(texts)]
    cache = tmp_path / "embeddings.sqlite"
    first = select_pool(pool, params, seed=1, cache_path=cache)
    assert first.metrics["embedded_texts"] == 40 and first.metrics["embedding_cache_hits"] == 0
    assert first.vectors.shape == (40, 16) and np.allclose(np.linalg.norm(first.vectors, axis=1), 1, atol=1e-5)
    again = select_pool(pool, params, seed=1, cache_path=cache)
    assert again.metrics["embedded_texts"] == 0 and again.metrics["embedding_cache_hits"] == 40
    assert np.array_equal(first.vectors, again.vectors) and again.records == first.records
    grown = select_pool(pool + [dict(pool[0], id="new", text="w7 w9 step 3 new")], params, seed=1, cache_path=cache)
    assert grown.metrics["embedded_texts"] == 1


def test_a_missing_sentence_transformer_is_one_line_naming_the_key(tmp_path):
    params = SelectParams(embedder="sentence-transformers:no-such-org/no-such-model", **FAST)
    with pytest.raises(ParamsError) as err:
        select_records([{"id": "a", "source": "s", "group": "g", "text": "hello"}], params, seed=1,
                       cache_path=tmp_path / "c.sqlite")
    message = str(err.value)
    assert message.startswith("select.embedder: sentence-transformers model 'no-such-org/no-such-model' is not "
                              "available locally") and "\n" not in message \
        and "select.embedder: sentence-transformers:minilm (packaged)" in message


def test_an_unknown_embedder_is_rejected_with_its_key(tmp_path, root):
    old = "  embedder: sentence-transformers:minilm  # tfidf"
    assert old in (root / "params.yaml").read_text()
    text = (root / "params.yaml").read_text().replace(old, "  embedder: word2vec  # tfidf", 1)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=r"select\.embedder: String should match pattern"):
        load_params(tmp_path / "params.yaml")


# ---------------------------------------------------------------------------------- the map

def test_map_is_sampled_deterministic_and_coloured_by_source(tmp_path, dialogues):
    pool = [dict(d, source="alpha" if i % 3 else "beta") for i, d in enumerate(dialogues)]
    params = SelectParams(n_samples=8, n_clusters=3, map_max_points=25, **FAST)
    selection = select_pool(pool, params, seed=3)
    metrics = write_selection_map(tmp_path / "a", selection, params, seed=3)
    write_selection_map(tmp_path / "b", selection, params, seed=3)
    assert metrics == {"map_method": "pca", "map_points": 25}
    for name in ("map.csv", "map.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with open(tmp_path / "a/map.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 25 and {r["source"] for r in rows} == {"alpha", "beta"}
    assert sum(int(r["selected"]) for r in rows) <= 8


def test_umap_map_is_seeded(dialogues):
    params = SelectParams(n_samples=8, n_clusters=3, **{**FAST, "umap_map": True})
    selection = select_pool(dialogues, params, seed=3)
    assert len(dialogues) >= UMAP_MIN_POINTS
    rows, metrics = map_rows(selection, params, seed=3)
    again, _ = map_rows(selection, params, seed=3)
    assert metrics == {"map_method": "umap", "map_points": len(dialogues)} and rows == again


def test_the_default_map_has_the_same_bytes_under_another_machines_float_noise(tmp_path, root, dialogues):
    """Embeddings differ across CPUs in the last bits (~1e-7: torch's generic vs AVX2 kernels on
    MiniLM). The default (PCA) map must not: map.csv and map.png keep their bytes. UMAP, the
    opt-in, is chaotic in its input, which is why it is not the default."""
    import dataclasses

    params = SelectParams(n_samples=8, n_clusters=3, svd_dims=8, decontam_ngram=0)
    assert params.umap_map is False and load_params(root / "params.yaml").select.umap_map is False
    selection = select_pool(dialogues, params, seed=3)
    noise = np.random.default_rng(0).uniform(-1e-7, 1e-7, selection.vectors.shape)
    other = dataclasses.replace(selection, vectors=(selection.vectors + noise).astype(np.float32))
    write_selection_map(tmp_path / "here", selection, params, seed=3)
    write_selection_map(tmp_path / "there", other, params, seed=3)
    for name in ("map.csv", "map.png"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "there" / name).read_bytes()
    umap = params.model_copy(update={"umap_map": True})
    here, _ = map_rows(selection, umap, seed=3)
    there, _ = map_rows(other, umap, seed=3)
    assert here != there        # documented: UMAP maps compare on one machine only
