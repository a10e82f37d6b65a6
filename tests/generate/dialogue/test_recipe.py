"""The recipe domain (synthtune.generate.dialogue.recipe): catalog, graph, walk rules, dialogues."""

import hashlib
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from synthtune.core.errors import InputError

from synthtune.generate.dialogue import get_domain, load_graph
from synthtune.generate.dialogue import recipe_templates as T
from synthtune.generate.dialogue.recipe import INTENTS, walk

RECIPE = get_domain("recipe")
generate_dialogues, load_catalog = RECIPE.generate, RECIPE.load_catalog

ROOT = Path(__file__).resolve().parents[3]
CATALOG_PATH = ROOT / "data" / "seeds" / "recipes.json"
GRAPH_PATH = ROOT / "data" / "seeds" / "graphs" / "recipe.json"

EXPECTED_INTENTS = {
    "greeting", "search_recipe", "more_results", "select_recipe", "show_ingredients", "start_cooking",
    "next_step", "previous_step", "go_to_step", "repeat_step", "set_timer", "ask_question", "chitchat",
    "deny", "goodbye",
}
EXPECTED_ACTS = {
    "greet", "show_results", "show_more", "confirm_selection", "ingredients", "step", "no_more_steps",
    "timer_set", "answer", "chitchat_reply", "acknowledge_deny", "farewell",
}
STEP_INTENTS = {"next_step", "previous_step", "go_to_step", "repeat_step"}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(CATALOG_PATH)


@pytest.fixture(scope="module")
def graph():
    return load_graph(GRAPH_PATH)


@pytest.fixture(scope="module")
def dialogues(catalog, graph):
    return generate_dialogues(catalog, graph, n=400, seed=13, max_turns=8)


@pytest.fixture(scope="module")
def nograph_dialogues(catalog, graph):
    return generate_dialogues(catalog, graph, n=400, seed=13, max_turns=8, use_graph=False)


def _dump(obj):
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------- catalog / graph


def test_catalog_size_and_shape(catalog):
    assert len(catalog) >= 150
    ids = [r["id"] for r in catalog]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"r\d{3}", i) for i in ids)
    titles = [r["title"] for r in catalog]
    assert len(set(titles)) == len(titles)
    for r in catalog:
        assert set(r) >= {"id", "title", "cuisine", "minutes", "ingredients", "steps"}
        assert isinstance(r["title"], str) and r["title"].strip()
        assert isinstance(r["cuisine"], str) and r["cuisine"].strip()
        assert isinstance(r["minutes"], int) and r["minutes"] > 0
        assert 4 <= len(r["ingredients"]) <= 10, r["id"]
        assert 3 <= len(r["steps"]) <= 7, r["id"]
        assert all(isinstance(x, str) and x.strip() for x in r["ingredients"] + r["steps"])
    # titles are varied: many distinct first and last words
    assert len({t.split()[0] for t in titles}) >= 15
    assert len({t.split()[-1] for t in titles}) >= 15
    assert len({r["cuisine"] for r in catalog}) >= 8


def test_intents_constant():
    assert set(INTENTS) == EXPECTED_INTENTS
    assert list(INTENTS) == sorted(INTENTS)


def test_graph_well_formed(graph):
    assert set(graph["start"]) <= EXPECTED_INTENTS
    assert set(graph["edges"]) <= EXPECTED_INTENTS
    for src, row in graph["edges"].items():
        assert set(row) <= EXPECTED_INTENTS, src
        assert all(w > 0 for w in row.values())
    assert graph["common"] == {"ask_question": 0.1, "chitchat": 0.1, "set_timer": 0.1, "deny": 0.1}
    reachable = set(graph["start"]) | set(graph["common"])
    for row in graph["edges"].values():
        reachable |= set(row)
    assert reachable == EXPECTED_INTENTS


@pytest.mark.parametrize("graph, message", [
    ({"domain": "recipe", "start": {"greeting": 1}, "edges": {"greeting": {"dance": 1}}},
     "edges.greeting: state 'dance' is not an intent of domain 'recipe'"),
    ({"domain": "recipe", "start": {"greeting": 1}, "edges": {"greeting": {"goodbye": 1}}},
     "edges.greeting: state 'goodbye' is undefined (no entry in edges)"),
    ({"domain": "recipe", "start": {"greeting": 1}, "edges": {"greeting": {"goodbye": -0.5}, "goodbye": {}}},
     "edges.greeting.goodbye: weight must be a number >= 0 (got -0.5)"),
    ({"domain": "recipe", "start": {"greeting": 1},
      "edges": {"greeting": {"goodbye": 1}, "goodbye": {}, "deny": {"goodbye": 1}}},
     "state 'deny' is unreachable from start"),
    ({"start": {"greeting": 1}, "edges": {"greeting": {}}}, "graph lacks 'domain'"),
    ({"domain": "space", "start": {}, "edges": {}}, "unknown dialogue domain 'space'"),
])
def test_load_graph_names_the_file_and_the_bad_state(tmp_path, graph, message):
    p = tmp_path / "g.json"
    p.write_text(json.dumps(graph))
    with pytest.raises(InputError) as exc:
        load_graph(p)
    assert str(p) in str(exc.value) or "unknown dialogue domain" in str(exc.value)
    assert message in str(exc.value)


def test_catalog_row_missing_a_field_names_file_and_item(tmp_path):
    rows = json.loads(CATALOG_PATH.read_text())[:3]
    del rows[1]["steps"]
    p = tmp_path / "recipes.json"
    p.write_text(json.dumps(rows))
    with pytest.raises(InputError, match=rf"{re.escape(str(p))}: recipe #1 \(id 'r002'\) lacks steps"):
        load_catalog(p)


def test_templates_are_rich_and_not_first_word_keyed():
    user = dict(T.USER)
    user["ask_question"] = [t for _, u, _ in T.QUESTIONS for t in u]
    for intent in EXPECTED_INTENTS:
        assert len(user[intent]) >= 5, intent
        first = {t.split()[0].strip(",.!?").lower() for t in user[intent]}
        assert len(first) >= 2, intent
    for act in EXPECTED_ACTS - {"step", "answer"}:
        assert len(T.SYSTEM[act]) >= 5, act
    for intent, tmpls in T.STEP_TEMPLATES.items():
        assert len(tmpls) >= 5, intent
    assert sum(len(a) for _, _, a in T.QUESTIONS) >= 5


# ---------------------------------------------------------------- walk rules


def _check_walk(states, max_turns, n_steps):
    intents = [s["intent"] for s in states]
    assert 1 <= len(intents) <= max_turns
    assert all(i in EXPECTED_INTENTS for i in intents)
    assert intents.count("search_recipe") == 1
    assert intents.count("more_results") <= 2
    assert intents.count("select_recipe") <= 1
    assert "greeting" not in intents[1:]
    assert intents[-1] == "goodbye" or len(intents) == max_turns
    assert "goodbye" not in intents[:-1]
    s_idx = intents.index("search_recipe")
    if "select_recipe" in intents:
        sel = intents.index("select_recipe")
        assert sel > s_idx
        assert all(j < sel for j, i in enumerate(intents) if i == "more_results")
    assert all(j > s_idx for j, i in enumerate(intents) if i == "more_results")
    cooking, cur = False, 0
    for s in states:
        i = s["intent"]
        if i in STEP_INTENTS:
            assert cooking, intents
        if i in ("show_ingredients", "start_cooking", "set_timer", "ask_question"):
            assert "select_recipe" in intents[: states.index(s)]
        if i == "start_cooking":
            assert not cooking
            cooking, cur = True, 1
        elif i == "next_step":
            if cur == n_steps:
                assert s["act"] == "no_more_steps"
            else:
                assert s["act"] == "step"
                cur += 1
        elif i == "previous_step":
            assert cur > 1
            cur -= 1
        elif i == "go_to_step":
            k = s["slots_hint"]["step"]
            assert 1 <= k <= n_steps and k != cur
            cur = k
        elif i == "set_timer":
            assert isinstance(s["slots_hint"]["minutes"], int)
        if cooking and s["act"] == "step":
            assert s["step"] == cur


@pytest.mark.parametrize("use_graph", [True, False])
def test_walk_rules(graph, use_graph):
    for seed in range(300):
        rng = random.Random(seed)
        n_steps = 3 + seed % 5
        max_turns = 2 + seed % 12
        states = walk(graph if use_graph else None, rng, max_turns, n_steps)
        _check_walk(states, max_turns, n_steps)


def test_walk_tiny_budget_still_searches(graph):
    for seed in range(50):
        states = walk(graph, random.Random(seed), 1, 4)
        assert [s["intent"] for s in states] == ["search_recipe"]


def test_no_more_steps_reached(graph):
    acts = Counter()
    for seed in range(400):
        for s in walk(graph, random.Random(seed), 30, 3):
            acts[s["act"]] += 1
    assert acts["no_more_steps"] > 0 and acts["step"] > 0


# ---------------------------------------------------------------- dialogues


def test_deterministic(catalog, graph):
    a = generate_dialogues(catalog, graph, n=50, seed=7, max_turns=8)
    b = generate_dialogues(catalog, graph, n=50, seed=7, max_turns=8)
    c = generate_dialogues(catalog, graph, n=50, seed=8, max_turns=8)
    assert _dump(a) == _dump(b)
    assert _dump(a) != _dump(c)
    # dialogue i only depends on (seed, i): a shorter run is a prefix
    assert _dump(generate_dialogues(catalog, graph, n=10, seed=7, max_turns=8)) == _dump(a[:10])


def test_record_shape(dialogues):
    for i, d in enumerate(dialogues):
        assert d["source"] == "recipe_tod"
        assert d["domain"] == "recipe"
        assert d["group"] == f"recipe_tod-{i}"
        canon = json.dumps(d["messages"], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        assert d["id"] == hashlib.sha1(canon.encode("utf-8")).hexdigest()[:16]
        meta = d["meta"]
        assert meta["generator"] == "template" and meta["use_graph"] is True
        assert [m["annotations"]["intent"] for m in d["messages"][::2]] == meta["walk"]
    assert len({d["id"] for d in dialogues}) == len(dialogues)


def _check_dialogue(d, catalog_by_id, max_turns):
    msgs = d["messages"]
    assert 2 <= len(msgs) <= 2 * max_turns and len(msgs) % 2 == 0
    recipe = catalog_by_id[d["meta"]["recipe_id"]]
    shown = None
    for j, m in enumerate(msgs):
        assert m["role"] == ("user" if j % 2 == 0 else "assistant")
        assert isinstance(m["content"], str) and m["content"].strip()
        ann = m["annotations"]
        if m["role"] == "user":
            assert ann["intent"] in INTENTS
            assert isinstance(ann["slots"], dict)
            for v in ann["slots"].values():
                assert isinstance(v, (str, int)) and not isinstance(v, bool)
                assert str(v) in m["content"], (v, m["content"])
            intent = ann["intent"]
            if intent == "search_recipe":
                assert set(ann["slots"]) == {"query"}
            elif intent == "select_recipe":
                k = ann["slots"]["index"]
                assert shown is not None and 1 <= k <= len(shown)
                # the gold recipe is on the page just shown, at the selected index
                assert shown[k - 1] == recipe["id"]
            elif intent == "go_to_step":
                assert 1 <= ann["slots"]["step"] <= len(recipe["steps"])
            elif intent == "set_timer":
                assert isinstance(ann["slots"]["minutes"], int)
                assert str(ann["slots"]["minutes"]) in msgs[j + 1]["content"]
        else:
            assert ann["act"] in EXPECTED_ACTS
            if ann["act"] in ("show_results", "show_more"):
                shown = ann["shown"]
                assert len(shown) == 3 and len(set(shown)) == 3
                for rid in shown:
                    assert catalog_by_id[rid]["title"] in m["content"]
            if ann["act"] == "step":
                k = ann["step"]
                assert recipe["steps"][k - 1] in m["content"]
                assert str(k) in m["content"]
            if ann["act"] == "confirm_selection":
                assert recipe["title"] in m["content"]
            if ann["act"] == "ingredients":
                assert all(x in m["content"] for x in recipe["ingredients"])


def test_dialogues_valid(dialogues, catalog):
    by_id = {r["id"]: r for r in catalog}
    for d in dialogues:
        _check_dialogue(d, by_id, 8)


def test_nograph_valid(nograph_dialogues, dialogues, catalog):
    by_id = {r["id"]: r for r in catalog}
    for d in nograph_dialogues:
        assert d["meta"]["use_graph"] is False
        _check_dialogue(d, by_id, 8)
        assert d["meta"]["walk"].count("search_recipe") == 1
    walks_g = Counter(i for d in dialogues for i in d["meta"]["walk"])
    walks_u = Counter(i for d in nograph_dialogues for i in d["meta"]["walk"])
    assert walks_g != walks_u
    # the graph drives cooking much more often than a uniform draw does
    assert walks_g["next_step"] > walks_u["next_step"]


def test_search_query_from_gold_and_results_lexical(dialogues, catalog):
    by_id = {r["id"]: r for r in catalog}
    for d in dialogues:
        recipe = by_id[d["meta"]["recipe_id"]]
        first = d["messages"][d["meta"]["walk"].index("search_recipe") * 2]
        query = first["annotations"]["slots"]["query"].lower()
        text = " ".join([recipe["title"], recipe["cuisine"]] + recipe["ingredients"]).lower()
        assert query in text
    # the first page mostly consists of recipes that share a word with the query (BM25 retrieval)
    def words(text):
        return set(re.findall(r"[a-z]+", text.lower()))

    hits = total = 0
    for d in dialogues:
        search_i = d["meta"]["walk"].index("search_recipe") * 2
        q = words(d["messages"][search_i]["annotations"]["slots"]["query"])
        for rid in d["messages"][search_i + 1]["annotations"]["shown"]:
            r = by_id[rid]
            toks = words(" ".join([r["title"], r["cuisine"]] + r["ingredients"]))
            hits += bool(q & toks)
            total += 1
    assert hits / total > 0.9


def test_gold_shown_before_select(dialogues):
    n_sel = 0
    for d in dialogues:
        walk_ = d["meta"]["walk"]
        if "select_recipe" not in walk_:
            continue
        n_sel += 1
        j = walk_.index("select_recipe") * 2
        last_page = d["messages"][j - 1]["annotations"]
        assert last_page["act"] in ("show_results", "show_more", "acknowledge_deny", "chitchat_reply")
        pages = [m["annotations"]["shown"] for m in d["messages"][:j] if "shown" in m["annotations"]]
        assert d["meta"]["recipe_id"] in pages[-1]
        assert all(d["meta"]["recipe_id"] not in p for p in pages[:-1])
    assert n_sel > len(dialogues) / 2


def test_lengths_typical(dialogues):
    lengths = [len(d["messages"]) for d in dialogues]
    mid = sum(1 for n in lengths if 8 <= n <= 16)
    assert mid / len(lengths) > 0.6
    assert max(lengths) <= 16


def test_all_intents_and_acts_occur(catalog, graph):
    ds = generate_dialogues(catalog, graph, n=1000, seed=3, max_turns=12)
    intents = Counter(m["annotations"]["intent"] for d in ds for m in d["messages"] if m["role"] == "user")
    acts = Counter(m["annotations"]["act"] for d in ds for m in d["messages"] if m["role"] == "assistant")
    assert set(intents) == EXPECTED_INTENTS
    assert set(acts) == EXPECTED_ACTS
    # utterances vary within an intent and do not share one fixed first word
    by_intent = {}
    for d in ds:
        for m in d["messages"][::2]:
            by_intent.setdefault(m["annotations"]["intent"], set()).add(m["content"])
    for intent, texts in by_intent.items():
        assert len(texts) >= 5, intent
        assert len({t.split()[0].lower() for t in texts}) >= 2, intent


def test_source_and_group(catalog, graph):
    ds = generate_dialogues(catalog, graph, n=3, seed=1, max_turns=6, source="abl")
    assert [d["group"] for d in ds] == ["abl-0", "abl-1", "abl-2"]
    assert all(d["source"] == "abl" for d in ds)
