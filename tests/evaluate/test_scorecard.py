"""Scoring: evaluate modules, intent/slot metrics on hand-made cases, slices, and predict -> score end to end."""
import csv
import json
import sys

import pytest
import yaml

from synthtune.core.errors import InputError
from synthtune.core.config import load_params
from synthtune.evaluate.metrics import METRICS, MetricContext, register_metric
from synthtune.evaluate.metrics.dialogue_state import macro_f1, slot_counts, slot_units
from synthtune.evaluate.scorecard import bucket_labels, build_scorecard, majority_predictions, references, score_turns
from synthtune.model.formats import annotation_line, to_chat
from synthtune.evaluate.metrics.text import cosine_scores, load_metric, text_metrics

GRAPH_INTENTS = {"greeting", "search_recipe", "next_step", "goodbye"}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine they lose 10-50x to contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def out(intent, slots=None, reply="ok"):
    return annotation_line({"intent": intent, "slots": slots or {}}) + "\n" + reply


def test_evaluate_modules_equal_the_libraries_they_wrap():
    import sacrebleu
    from rouge_score import rouge_scorer

    hyps = ["the cat sat on the mat", "boil the pasta for ten minutes", "x"]
    refs = ["the cat sat on a mat", "boil pasta ten minutes", "y z"]
    scores = text_metrics(hyps, refs)
    assert scores["bleu"] == round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)
    assert scores["chrf"] == round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2)
    scorer = rouge_scorer.RougeScorer(["rouge2", "rougeL"])
    assert scores["rouge_l"] == round(100 * sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / 3, 2)
    assert scores["rouge_2"] == round(100 * sum(scorer.score(r, h)["rouge2"].fmeasure for h, r in zip(hyps, refs)) / 3, 2)
    assert load_metric("exact_match").compute(predictions=["Hello  World ", "a"], references=["hello world", "b"]) == {
        "exact_match": 0.5}


def test_cosine_tfidf_counts_unseen_words():
    same, apart, partial = cosine_scores(["boil the pasta", "qqq zzz", "pasta zzz qqq www"],
                                         ["boil the pasta", "boil the pasta", "pasta"])
    assert same == pytest.approx(1.0) and apart == 0.0
    assert 0 < partial < 0.8       # words the references never use still weigh in the prediction's vector


def test_macro_f1_known_value():
    # class a: tp=1 fp=0 fn=1 -> 2/3; class b: tp=1 fp=1 fn=0 -> 2/3
    assert macro_f1(["a", "a", "b"], ["a", "b", "b"]) == pytest.approx(2 / 3)
    assert macro_f1(["a"], [None]) == 0.0


def test_slot_units_numbers_lists_and_strings():
    assert slot_units({"minutes": 3}) == slot_units({"minutes": "3"}) == slot_units({"Minutes": 3.0})
    assert slot_units({"minutes": 3}) != slot_units({"minutes": 3.5})
    assert slot_units({"query": "  Za'atar   Chicken "}) == slot_units({"query": "za'atar chicken"})
    assert sum(slot_units({"items": ["salt", "Pepper"], "empty": "", "none": None}).values()) == 2
    # gold: query=pasta, items={salt, pepper, oil}; predicted: query=pasta, items={salt, sugar}, step=2
    tp, n_pred, n_gold = slot_counts({"query": "pasta", "items": ["salt", "pepper", "oil"]},
                                     {"query": "Pasta", "items": ["salt", "sugar"], "step": 2})
    assert (tp, n_pred, n_gold) == (2, 4, 4)


def test_intent_micro_scores_out_of_graph_and_unparsed():
    refs = {f"d:{i}": {"index": i, "intent": intent, "slots": slots, "reply": "ok", "position": i, "source": "s"}
            for i, (intent, slots) in enumerate([("greeting", {}), ("search_recipe", {"query": "pasta"}),
                                                 ("next_step", {}), ("goodbye", {"minutes": 5})], start=1)}
    preds = [{"id": "d:1", "output": out("greeting")},                                 # right
             {"id": "d:2", "output": out("next_step", {"query": "pasta", "x": 1})},     # wrong intent, 1 of 2 slots
             {"id": "d:3", "output": out("dance")},                                    # outside the graph
             {"id": "d:4", "output": "not an annotation"}]                             # unparsed
    s = score_turns(refs, preds, GRAPH_INTENTS, "p.jsonl", turn_buckets=[1, 2, 4])
    assert s["intent_accuracy"] == 0.25 and s["intent_micro_recall"] == 0.25
    assert s["intent_micro_precision"] == pytest.approx(0.3333, abs=1e-4)
    assert s["out_of_graph_rate"] == 0.25 and s["unparsed_rate"] == 0.25
    assert (s["slot_precision"], s["slot_recall"], s["slot_f1"]) == (0.5, 0.5, 0.5)
    assert (s["turns@t1"], s["turns@t2-3"], s["turns@t4+"]) == (1, 2, 1)
    assert s["intent_accuracy@t1"] == 1.0 and s["intent_accuracy@t4+"] == 0.0


def test_bucket_labels():
    assert bucket_labels([1, 2, 4, 7]) == [(1, "t1"), (2, "t2-3"), (4, "t4-6"), (7, "t7+")]


def test_perfect_predictions_score_perfectly(dialogues):
    examples = [to_chat(d) for d in dialogues[:5]]
    refs = references(examples)
    preds = [{"id": key, "output": annotation_line(t) + "\n" + t["reply"]} for key, t in refs.items()]
    scores = score_turns(refs, preds, {t["intent"] for t in refs.values()}, "p.jsonl")
    for key in ("intent_accuracy", "intent_macro_f1", "intent_micro_f1", "slot_f1", "exact_match"):
        assert scores[key] == 1.0, key
    assert scores["bleu"] > 99 and scores["rouge_l"] > 99 and scores["chrf"] > 99
    assert scores["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert sum(v for k, v in scores.items() if k.startswith("turns@")) == scores["turns"]
    assert all(isinstance(v, (int, float)) for v in scores.values())          # flat: dvc metrics diff reads it


def test_majority_baseline_and_id_mismatch(dialogues):
    examples = [to_chat(d) for d in dialogues]
    refs = references(examples[:5])
    majority = majority_predictions(examples[5:], refs)
    scores = score_turns(refs, majority, {"next_step"}, "m")
    assert 0 < scores["intent_accuracy"] < 1
    with pytest.raises(InputError, match="prediction ids do not match"):
        score_turns(refs, majority[:-1], set(), "short.jsonl")


def test_sources_are_sliced_and_unannotated_chat_is_scored_as_replies(dialogues):
    tod = to_chat(dialogues[0])
    qa = {"id": "q1", "source": "faq", "group": "g", "gold": [],
          "messages": [{"role": "user", "content": "How long do I boil eggs?"},
                       {"role": "assistant", "content": "About nine minutes."}]}
    refs = references([tod, qa])
    assert refs["q1:1"]["intent"] is None and refs["q1:1"]["reply"] == "About nine minutes."
    preds = [{"id": k, "output": annotation_line(t) + "\n" + t["reply"] if t["intent"] else t["reply"]}
             for k, t in refs.items()]
    s = score_turns(refs, preds, {t["intent"] for t in refs.values() if t["intent"]}, "p")
    assert s["turns@faq"] == 1 and s["bleu@faq"] > 99 and "intent_accuracy@faq" not in s
    assert s["turns@recipe_tod"] == len(tod["gold"]) and s["intent_accuracy@recipe_tod"] == 1.0


# --- the METRICS registry ----------------------------------------------------------------------------

def test_registry_order_is_the_scorecard_key_order():
    assert list(METRICS) == ["dialogue_state", "text", "cosine", "perplexity", "api_match"]
    assert [m.scope for m in METRICS.values()] == ["turns", "turns", "turns", "model", "model"]
    with pytest.raises(ValueError, match="registered twice"):
        register_metric("text")(lambda ctx: {})


@pytest.fixture
def small_run(tmp_path, root, dialogues):
    test = [to_chat(d) for d in dialogues[:3]]
    refs = references(test)
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "tuned.jsonl").write_text("".join(
        json.dumps({"id": k, "output": annotation_line(t) + "\n" + t["reply"]}) + "\n" for k, t in refs.items()))
    params = load_params(root / "params.yaml")
    return lambda: build_scorecard(test, [to_chat(d) for d in dialogues[3:8]], pred, root / "data/seeds/graphs",
                                   root / "data/seeds/api", [], params)


def test_a_registered_metric_appears_in_the_scorecard(small_run):
    seen = []

    @register_metric("throwaway_turns", sliced=("throwaway_replies",))
    def throwaway(ctx: MetricContext) -> dict:
        return {"throwaway_replies": len(ctx.turns), "throwaway_unsliced": 1}

    @register_metric("throwaway_model", scope="model")
    def throwaway_model(ctx: MetricContext) -> dict:
        seen.append(ctx.model)
        return {"throwaway_model": len(ctx.turns.refs)}

    try:
        card, cosines, _ = small_run()
    finally:
        del METRICS["throwaway_turns"], METRICS["throwaway_model"]
    assert sorted(seen) == sorted(card) == ["majority", "tuned"]
    tuned = card["tuned"]
    assert tuned["throwaway_replies"] == tuned["turns"] == tuned["throwaway_model"] == len(cosines["tuned"])
    assert tuned["throwaway_replies@t1"] == tuned["turns@t1"] and "throwaway_unsliced@t1" not in tuned
    keys = list(tuned)
    assert keys.index("cosine_median") < keys.index("throwaway_replies") < keys.index("turns@t1")
    assert keys[-1] == "throwaway_model"
    assert "throwaway_replies" not in small_run()[0]["tuned"]          # unregistered: gone again


# --- predict -> score, end to end on a tiny model --------------------------------------------------

@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, root, dialogues, tiny_model, tiny_tokenizer):
    from synthtune.core.cli import run_stage
    from stages import predict, score

    work = tmp_path_factory.mktemp("predict")
    base = work / "base"
    tiny_model.save_pretrained(base, safe_serialization=True)
    tiny_tokenizer.save_pretrained(base)
    (base / "manifest.json").write_text(json.dumps({"name": "tiny", "path": "."}))
    formatted = work / "formatted"
    formatted.mkdir()
    for split, part in (("test", dialogues[:2]), ("val", dialogues[2:4]), ("train", dialogues[4:12])):
        (formatted / f"{split}.jsonl").write_text("".join(json.dumps(to_chat(d)) + "\n" for d in part))
    prompts = work / "api_prompts.csv"           # a CSV prompt set (id, prompt, reference; one without a reference)
    shipped = [json.loads(line) for line in (root / "data/seeds/api_prompts.jsonl").read_text().splitlines()[:3]]
    shipped[2]["reference"] = ""
    with prompts.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "prompt", "reference"])
        writer.writeheader()
        writer.writerows(shipped)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["predict"].update(max_new_tokens=6, api_max_new_tokens=6)
    (work / "params.yaml").write_text(yaml.safe_dump(params))

    def run(stage, *args):
        old = sys.argv
        sys.argv = ["stage", *map(str, args), "--params", str(work / "params.yaml")]
        try:
            run_stage(stage.main)
        finally:
            sys.argv = old

    run(predict, formatted, prompts, base, base, work / "pred", work / "predict.json")
    run(score, formatted, work / "pred", root / "data/seeds/graphs", root / "data/seeds/api", prompts,
        work / "score.json", work / "plots")
    return work, run


def test_predict_writes_every_model_and_perplexity(pipeline):
    work, _ = pipeline
    assert sorted(p.name for p in (work / "pred").iterdir()) == ["api", "base.jsonl", "perplexity.json", "tuned.jsonl"]
    assert [json.loads(r)["id"] for r in (work / "pred/api/tuned.jsonl").read_text().splitlines()] == [
        "api01", "api02", "api03"]
    ppl = json.loads((work / "pred/perplexity.json").read_text())
    assert ppl["base"] == ppl["tuned"] and ppl["base"]["perplexity"] > 1 and ppl["base"]["val_tokens"] > 0


def test_scorecard_shape(pipeline):
    work, _ = pipeline
    card = json.loads((work / "score.json").read_text())
    assert set(card) == {"base", "tuned", "majority"}
    for name, metrics in card.items():
        assert all(isinstance(v, (int, float)) for v in metrics.values()), name
        assert {"intent_accuracy", "intent_micro_f1", "slot_f1", "bleu", "rouge_1", "rouge_2", "rouge_l", "chrf",
                "exact_match", "cosine", "out_of_graph_rate", "intent_accuracy@t1", "turns@t2-3"} <= set(metrics)
    assert "perplexity" in card["tuned"] and card["tuned"]["api_prompts"] == 3
    assert card["tuned"]["api_prompts_with_reference"] == 2 and "api_no_call_rate" in card["tuned"]
    assert "perplexity" not in card["majority"] and "api_prompts" not in card["majority"]
    assert (work / "plots/cosine.png").read_bytes()[:4] == b"\x89PNG"
    assert (work / "plots/confusion.csv").read_text().startswith("actual,predicted")


def test_bad_inputs_are_one_line_errors(pipeline, capsys):
    from stages import predict, score

    work, run = pipeline
    empty = work / "empty"
    empty.mkdir()
    for split in ("test", "val", "train"):
        (empty / f"{split}.jsonl").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        run(predict, empty, work / "api_prompts.csv", work / "base", work / "base", work / "p2", work / "m.json")
    assert exit_info.value.code == 2
    assert "the test split is empty" in capsys.readouterr().err.strip().splitlines()[-1]
    rows = (work / "pred/base.jsonl").read_text().splitlines()
    bad = work / "badpred"
    bad.mkdir()
    (bad / "base.jsonl").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(SystemExit):
        run(score, work / "formatted", bad, "data/seeds/graphs", "data/seeds/api", work / "api_prompts.csv",
            work / "s.json", work / "plots2")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "base.jsonl: prediction ids do not match the references (1 missing" in line


# --- SynTOD's intent mapping and the bootstrap intervals ---------------------------------------------

def _turn_refs(intents):
    return {f"d{i // 2}:{i}": {"index": i, "intent": intent, "slots": {}, "reply": "ok", "position": 1 + i % 2,
                               "source": "s", "dialogue": f"d{i // 2}"} for i, intent in enumerate(intents)}


def test_out_of_graph_intents_are_mapped_to_the_nearest_graph_intent_by_minilm():
    refs = _turn_refs(["next_step", "search_recipe", "goodbye", "greeting"])
    preds = [{"id": "d0:0", "output": out("next steps")},        # a near miss of the graph's name
             {"id": "d0:1", "output": out("recipe_search")},
             {"id": "d1:2", "output": out("goodbye")},           # in the graph: never remapped
             {"id": "d1:3", "output": "no annotation"}]          # unparsed: nothing to map
    s = score_turns(refs, preds, GRAPH_INTENTS, "p.jsonl", embedder="sentence-transformers:minilm")
    assert s["intent_accuracy"] == 0.25 and s["out_of_graph_rate"] == 0.5
    assert s["intent_accuracy_mapped"] == 0.75 and s["intent_macro_f1_mapped"] > s["intent_macro_f1"]
    lexical = score_turns(refs, preds, GRAPH_INTENTS, "p.jsonl", embedder="tfidf")   # tfidf: no mapping
    assert lexical["intent_accuracy_mapped"] == lexical["intent_accuracy"] == 0.25


def test_a_prediction_is_judged_and_mapped_within_its_own_dialogues_domain(root):
    """A recipe intent predicted in a shop dialogue is out of graph there (though the recipe graph has
    it), and SynTOD's mapping picks among the shop intents only."""
    from synthtune.core.config import load_params
    from synthtune.evaluate.scorecard import domain_intents, score_model, scored_turns, source_intents

    params = load_params(root / "params.yaml")
    per_source = source_intents(domain_intents(root / "data/seeds/graphs"), params.sources)
    assert "search_recipe" in per_source["recipe_tod"] and "search_recipe" not in per_source["shop_tod"]
    refs = {f"d{i}:1": {"index": 1, "intent": gold, "slots": {}, "reply": "ok", "position": 1, "source": src,
                        "dialogue": f"d{i}"}
            for i, (src, gold) in enumerate([("shop_tod", "search_product"), ("recipe_tod", "search_recipe"),
                                             ("shop_tod", "greeting")])}
    preds = [{"id": "d0:1", "output": out("search_recipe")},   # the other domain's search
             {"id": "d1:1", "output": out("search_recipe")},
             {"id": "d2:1", "output": out("greeting")}]
    union = set().union(*per_source.values())
    card = score_model(MetricContext("m", scored_turns(refs, preds, "p"), union, "sentence-transformers:minilm",
                                     source_intents=per_source), [1])
    assert card["out_of_graph_rate"] == round(1 / 3, 4) and card["intent_accuracy"] == round(2 / 3, 4)
    assert card["intent_accuracy_mapped"] == 1.0              # mapped to the shop's search_product
    everywhere = score_model(MetricContext("m", scored_turns(refs, preds, "p"), union,
                                           "sentence-transformers:minilm"), [1])
    assert everywhere["out_of_graph_rate"] == 0.0 and everywhere["intent_accuracy_mapped"] == round(2 / 3, 4)


def test_bootstrap_intervals_resample_dialogues_and_bracket_the_estimate():
    from synthtune.evaluate.scorecard import score_model, scored_turns

    intents = ["greeting", "next_step"] * 20
    refs = _turn_refs(intents)
    preds = [{"id": key, "output": out(ref["intent"] if int(key.split(":")[1]) % 5 else "goodbye")}
             for key, ref in refs.items()]
    ctx = MetricContext("m", scored_turns(refs, preds, "p"), GRAPH_INTENTS)
    card = score_model(ctx, [1, 2], bootstrap=200, seed=7)
    assert card["intent_accuracy"] == 0.8
    assert card["intent_accuracy_ci_low"] < 0.8 < card["intent_accuracy_ci_high"]
    assert 0.6 < card["intent_accuracy_ci_low"] and card["intent_accuracy_ci_high"] < 0.95
    assert score_model(ctx, [1, 2], bootstrap=200, seed=7) == card            # seeded: same intervals
    assert "intent_accuracy_ci_low" not in score_model(ctx, [1, 2], bootstrap=0)
    perfect = [{"id": key, "output": out(ref["intent"])} for key, ref in refs.items()]
    exact = score_model(MetricContext("m", scored_turns(refs, perfect, "p"), GRAPH_INTENTS), [1, 2], bootstrap=50)
    assert exact["intent_accuracy_ci_low"] == exact["intent_accuracy_ci_high"] == 1.0
