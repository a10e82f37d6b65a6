import pytest

from lib.config import SelectParams
from lib.errors import InputError
from lib.scoring import macro_f1, majority_predictions, references, score_turns
from lib.selection import proportional_quota, select_records, uniform_quota
from lib.templates import annotation_line, to_chat


def test_macro_f1_known_value():
    # class a: tp=1 fp=0 fn=1 -> 2/3; class b: tp=1 fp=1 fn=0 -> 2/3
    assert macro_f1(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 3)
    assert macro_f1(["a"], [None]) == 0.0


def test_perfect_predictions_score_perfectly(dialogues):
    examples = [to_chat(d) for d in dialogues[:5]]
    refs = references(examples)
    preds = [{"id": key, "output": annotation_line(t) + "\n" + t["reply"]} for key, t in refs.items()]
    scores = score_turns(refs, preds, {t["intent"] for t in refs.values()}, "p.jsonl")
    assert scores["intent_accuracy"] == 1.0 and scores["intent_macro_f1"] == 1.0
    assert scores["bleu"] > 99 and scores["rouge_l"] > 99


def test_majority_baseline_and_id_mismatch(dialogues):
    examples = [to_chat(d) for d in dialogues]
    refs = references(examples[:5])
    majority = majority_predictions(examples[5:], refs)
    scores = score_turns(refs, majority, {"next_step"}, "m")
    assert 0 < scores["intent_accuracy"] < 1
    with pytest.raises(InputError, match="prediction ids do not match"):
        score_turns(refs, majority[:-1], set(), "short.jsonl")


def test_quota_is_proportional_with_minimum_one():
    assert proportional_quota({0: 90, 1: 9, 2: 1}, 10) == {0: 9, 1: 1, 2: 1}


def test_selection_is_seeded_and_falls_back(dialogues):
    params = SelectParams(n_samples=10, n_clusters=3, svd_dims=8)
    a, metrics = select_records(dialogues, params, seed=1)
    b, _ = select_records(dialogues, params, seed=1)
    assert a == b and 3 <= len(a) <= 12 and metrics["n_clusters"] == 3
    whole, metrics = select_records(dialogues[:5], params, seed=1)
    assert len(whole) == 5 and "fallback" in metrics


def test_uniform_quota_redistributes_what_small_clusters_cannot_take():
    assert uniform_quota({0: 2, 1: 50, 2: 50}, 30) == {0: 2, 1: 14, 2: 14}
    assert sum(uniform_quota({0: 5, 1: 5}, 30).values()) == 10


def test_selection_reports_diversity_and_cluster_fallback(dialogues):
    params = SelectParams(n_samples=10, n_clusters=100, svd_dims=8, quota="uniform", decontam_ngram=0)
    selected, metrics = select_records(dialogues, params, seed=1)
    assert "n_clusters 100 > pool size" in metrics["fallback"]
    assert metrics["selected_from_recipe_tod"] == len(selected)
    assert 0 < metrics["mean_pairwise_distance"] <= 2
