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


def test_bad_answers_quarantine_their_dialogue_only(dialogues):
    def answer(request):
        if request.meta["record"] == dialogues[1]["id"] and request.meta["turn"] == 0:
            return ChatResponse(text="not json", ok=False, error="malformed JSON after one repair")
        if request.meta["record"] == dialogues[2]["id"]:
            return ChatResponse(text="{}", data={"txt": "x"})
        if request.meta["record"] == dialogues[3]["id"] and "search for" not in request.meta["template"]:
            return ChatResponse(text='{"text": "something else entirely"}', data={"text": "something else entirely"})
        return rewrite(request)

    voiced, rejects = voice_dialogues(dialogues, "recipe", FakeTeacher(answer), ChatRequest)
    reasons = {r["record"]: r["reason"] for r in rejects}
    assert reasons[dialogues[1]["id"]] == "teacher answer unusable: turn 0: malformed JSON after one repair"
    assert reasons[dialogues[2]["id"]] == 'teacher answer unusable: turn 0: answer lacks a non-empty "text" string'
    # dialogue 3's search turn lost its query: the slot must be said word for word
    assert "drops slot value" in reasons[dialogues[3]["id"]]
    assert len(voiced) + len(rejects) == len(dialogues)
