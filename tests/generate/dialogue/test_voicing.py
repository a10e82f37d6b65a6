"""The LLM simulator: per-turn requests, validation of the teacher's answers, quarantine."""
import json
from pathlib import Path

import pytest

from synthtune.generate.dialogue import get_domain, load_graph, voice_dialogues
from synthtune.generate.dialogue.voicing import turn_requests
from synthtune.llm.teacher import ChatRequest, ChatResponse

SEEDS = Path(__file__).resolve().parents[3] / "data" / "seeds"


@pytest.fixture(scope="module")
def dialogues():
    recipe = get_domain("recipe")
    return recipe.generate(recipe.load_catalog(SEEDS / "recipes.json"), load_graph(SEEDS / "graphs" / "recipe.json"),
                           n=6, seed=1, max_turns=6)


class FakeTeacher:
    """Answers like an LLM would: a rewrite of the draft, or a planted failure."""
    backend, model = "openai", "fake-model"

    def __init__(self, answer):
        self.answer = answer
        self.seen = []

    def complete(self, requests, offline=None):
        self.seen.extend(requests)
        return [self.answer(r) for r in requests]


def rewrite(request):
    text = "well, " + request.meta["template"]
    return ChatResponse(text=json.dumps({"text": text}), data={"text": text})


def test_one_request_per_turn_with_intent_slots_and_history(dialogues):
    d = dialogues[0]
    requests = turn_requests(d, "recipe", ChatRequest)
    assert len(requests) == len(d["messages"])
    first_user = requests[0].messages[0]["content"]
    assert f"intent: {d['messages'][0]['annotations']['intent']}" in first_user
    assert "(the conversation starts here)" in first_user
    assert d["messages"][0]["content"] in requests[1].messages[0]["content"]   # history
    search = next(i for i, m in enumerate(d["messages"]) if m.get("annotations", {}).get("intent") == "search_recipe")
    assert json.dumps(d["messages"][search]["annotations"]["slots"]) in requests[search].messages[0]["content"]
    assert all(r.json for r in requests)


def test_voiced_dialogues_keep_annotations_and_get_new_ids(dialogues):
    teacher = FakeTeacher(rewrite)
    voiced, rejects = voice_dialogues(dialogues, "recipe", teacher, ChatRequest)
    assert not rejects and len(voiced) == len(dialogues)
    for before, after in zip(dialogues, voiced):
        assert [m.get("annotations") for m in before["messages"]] == [m.get("annotations") for m in after["messages"]]
        assert all(m["content"].startswith("well, ") for m in after["messages"])
        assert after["id"] != before["id"] and after["meta"]["teacher_model"] == "fake-model"


def test_a_weak_model_costs_turns_never_dialogues(dialogues):
    """Unusable answers are re-asked (next sample, sampled), then keep the template text, flagged."""
    def answer(request):
        if request.meta["record"] == dialogues[1]["id"] and request.meta["turn"] == 0:
            return ChatResponse(text="not json", ok=False, error="malformed JSON after one repair")
        if request.meta["record"] == dialogues[2]["id"]:
            return ChatResponse(text="{}", data={"txt": "x"})
        if request.meta["record"] == dialogues[3]["id"] and "search for" not in request.meta["template"]:
            return ChatResponse(text='{"text": "something else entirely"}', data={"text": "something else entirely"})
        if request.meta["record"] == dialogues[4]["id"] and request.meta["turn"] == 1 and request.sample < 2:
            return ChatResponse(text="{}", data={"txt": "x"})        # fixed on the second re-ask
        return rewrite(request)

    teacher = FakeTeacher(answer)
    voiced, rejects = voice_dialogues(dialogues, "recipe", teacher, ChatRequest, reasks=2)
    assert rejects == [] and [v["group"] for v in voiced] == [d["group"] for d in dialogues]
    by_group = {v["group"]: v for v in voiced}
    one = by_group[dialogues[1]["group"]]
    assert one["meta"]["voiced"] is False
    assert one["meta"]["voicing"]["fallbacks"] == [{"turn": 0, "reason": "malformed JSON after one repair"}]
    assert one["messages"][0]["content"] == dialogues[1]["messages"][0]["content"]      # the template text
    assert all(m["content"].startswith("well, ") for m in one["messages"][1:])
    two = by_group[dialogues[2]["group"]]["meta"]["voicing"]
    assert two["voiced"] == 0 and {f["reason"] for f in two["fallbacks"]} == {'answer lacks a non-empty "text" string'}
    assert two["reasks"] == 2 * two["turns"]
    three = by_group[dialogues[3]["group"]]["meta"]["voicing"]["fallbacks"]
    assert three and all("drops slot value" in f["reason"] for f in three)
    four = by_group[dialogues[4]["group"]]
    assert four["meta"]["voiced"] is True and four["meta"]["voicing"]["reasks"] == 2
    # annotations (the labels) never change, whichever text a turn keeps
    for before, after in zip(dialogues, voiced):
        assert [m.get("annotations") for m in before["messages"]] == [m.get("annotations") for m in after["messages"]]
    # re-asks: the same prompt as the next sample, never greedy (a greedy re-ask repeats itself)
    again = [r for r in teacher.seen if r.sample > 0]
    assert again and all(r.temperature >= 0.7 and r.schema is not None for r in again)
    assert {r.sample for r in again} == {1, 2}


def test_voicing_metrics_count_turns_reasks_and_fallbacks(dialogues):
    from synthtune.generate.dialogue.voicing import voicing_metrics

    def answer(request):
        if request.meta["record"] == dialogues[0]["id"] and request.meta["turn"] == 0:
            return ChatResponse(text="{}", data={"txt": "x"})
        return rewrite(request)

    voiced, _ = voice_dialogues(dialogues, "recipe", FakeTeacher(answer), ChatRequest, reasks=1)
    turns = sum(len(d["messages"]) for d in dialogues)
    assert voicing_metrics(voiced) == {"voiced_turn_rate": round((turns - 1) / turns, 4), "voicing_reasks": 1,
                                       "voicing_fallbacks": 1, "voiced_dialogues": len(dialogues) - 1}
    assert voicing_metrics(dialogues) == {}          # template dialogues: nothing to report


def test_looping_and_echoing_turns_are_reasked_then_keep_the_template(dialogues):
    """What SmolLM2-135M really wrote (`dvc exp run -n llm-voiced`, README): an emoji run, and a
    user turn that repeats the assistant's result list. Both are re-asked, then fall back."""
    d = dialogues[0]
    echo_at = next(j for j, m in enumerate(d["messages"]) if m["role"] == "user" and j
                   and len(d["messages"][j - 1]["content"].split()) >= 8)
    loop_at = next(j for j, m in enumerate(d["messages"]) if m["role"] == "assistant" and j != echo_at - 1)

    def answer(request):
        turn, previous = request.meta["turn"], d["messages"][request.meta["turn"] - 1]["content"]
        if request.meta["record"] == d["id"] and turn == echo_at:
            text = "You can try: " + previous
        elif request.meta["record"] == d["id"] and turn == loop_at:
            text = "Here you go! 🍗🍗🍗🍗🍗🍗 " + request.meta["template"]
        else:
            return rewrite(request)
        return ChatResponse(text=json.dumps({"text": text}), data={"text": text})

    voiced, _ = voice_dialogues([d], "recipe", FakeTeacher(answer), ChatRequest, reasks=1)
    fallbacks = {f["turn"]: f["reason"] for f in voiced[0]["meta"]["voicing"]["fallbacks"]}
    assert fallbacks == {echo_at: "user text echoes the assistant's previous reply",
                         loop_at: "text loops ('🍗🍗🍗🍗🍗🍗')"}
    assert voiced[0]["messages"][echo_at]["content"] == d["messages"][echo_at]["content"]
    assert voiced[0]["meta"]["voicing"]["reasks"] == 2


def test_the_quality_checks_pass_every_template_turn(dialogues):
    """No false alarms on the template simulator's own wording (also checked on the committed
    run's 5,644 turns: none trips either check)."""
    from synthtune.generate.dialogue.voicing import LOOP, echoes

    for d in dialogues:
        for j, m in enumerate(d["messages"]):
            assert not LOOP.search(m["content"]), m["content"]
            assert not (m["role"] == "user" and j and echoes(m["content"], d["messages"][j - 1]["content"]))
    assert echoes("sure, 1. Harissa Lamb Wraps (40 min) 2. Cajun Lamb Burgers", "1. Harissa Lamb Wraps (40 min) 2. Cajun Lamb Burgers (45 min)")
    assert not echoes("the Harissa Lamb Wraps please", "1. Harissa Lamb Wraps (40 min) 2. Cajun Lamb Burgers (45 min)")


@pytest.fixture(scope="module")
def recipe_source():
    """A source's worth of template dialogues: the intent centroids come from these wordings."""
    recipe = get_domain("recipe")
    return recipe.generate(recipe.load_catalog(SEEDS / "recipes.json"), load_graph(SEEDS / "graphs" / "recipe.json"),
                           n=200, seed=3, max_turns=6)


def test_a_user_turn_that_says_another_intent_is_reasked_then_keeps_its_template(recipe_source):
    """Slot-less intents have no slot value to check: a "greeting" voiced as a timer request would
    train as a greeting. The intent check catches it; honest rewrites of every turn pass."""
    d = next(r for r in recipe_source if r["messages"][0]["annotations"]["intent"] == "greeting")
    off = "Please set a timer for ten minutes."

    def answer(request):
        if request.meta["record"] == d["id"] and request.meta["turn"] == 0:
            return ChatResponse(text=json.dumps({"text": off}), data={"text": off})
        return rewrite(request)

    voiced, _ = voice_dialogues(recipe_source, "recipe", FakeTeacher(answer), ChatRequest, reasks=1,
                                intent_check="sentence-transformers:minilm", intent_margin=0.15)
    by_group = {v["group"]: v for v in voiced}
    fallbacks = by_group[d["group"]]["meta"]["voicing"]["fallbacks"]
    assert [f["turn"] for f in fallbacks] == [0]
    assert fallbacks[0]["reason"].startswith("user text reads as set_timer (") and "not greeting (" in fallbacks[0]["reason"]
    assert by_group[d["group"]]["messages"][0]["content"] == d["messages"][0]["content"]     # the template text
    # no false alarm: every other turn of the source, rewritten faithfully, is voiced
    assert sum(len(v["meta"]["voicing"]["fallbacks"]) for v in voiced) == 1
    # and with the check off the off-intent text is kept, as before
    unchecked, _ = voice_dialogues([d], "recipe", FakeTeacher(answer), ChatRequest, reasks=1)
    assert unchecked[0]["messages"][0]["content"] == off


def test_the_intent_check_passes_held_out_template_wordings_and_catches_swapped_ones(recipe_source):
    """The margin's trade-off on the simulator's own wordings: a wording of intent A held out of the
    wordings compared with reads as A; the same wording claimed as another intent B fails. (A voiced
    turn is easier: it rewrites its own template wording, which is among them.)"""
    from synthtune.generate.dialogue.voicing import IntentCheck

    users = [(m["content"], m["annotations"]["intent"]) for r in recipe_source for m in r["messages"]
             if m["role"] == "user"]
    held = {text for i, (text, _) in enumerate(users) if i % 5 == 0}
    check = IntentCheck([{"messages": [{"role": "user", "content": t, "annotations": {"intent": a}}]}
                         for t, a in users if t not in held], "sentence-transformers:minilm", 0.15)
    pairs = sorted({(t, a) for t, a in users if t in held and a in check.intents})
    genuine = check.failures([t for t, _ in pairs], [a for _, a in pairs])
    assert sum(r is not None for r in genuine) <= 0.05 * len(pairs)
    swapped = [check.intents[(check.intents.index(a) + 1) % len(check.intents)] for _, a in pairs]
    caught = check.failures([t for t, _ in pairs], swapped)
    assert sum(r is not None for r in caught) >= 0.9 * len(pairs)
    assert check.failures(["hello"], ["an_intent_the_source_never_had"]) == [None]
