"""The e-commerce simulator: catalog, walk rules, grounding of results and slots, ablation."""
import json
from collections import Counter
from pathlib import Path

import pytest

from synthtune.core.errors import InputError
from synthtune.generate.dialogue import get_domain, load_graph
from synthtune.generate.dialogue.ecommerce import MAX_CART, MAX_CLARIFY, MAX_COMPARE, MAX_MORE_RESULTS, SHOP_INTENTS

SHOP = get_domain("ecommerce")
generate_shop_dialogues, load_products = SHOP.generate, SHOP.load_catalog

ROOT = Path(__file__).resolve().parents[3]
PRODUCTS = ROOT / "data" / "seeds" / "products.json"
GRAPH = ROOT / "data" / "seeds" / "graphs" / "ecommerce.json"


@pytest.fixture(scope="module")
def catalog():
    return load_products(PRODUCTS)


@pytest.fixture(scope="module")
def dialogues(catalog):
    return generate_shop_dialogues(catalog, load_graph(GRAPH), n=300, seed=3, max_turns=14)


def test_catalog_is_rebuilt_by_its_script(catalog):
    import runpy

    compose = runpy.run_path(str(ROOT / "scripts" / "build_products.py"))["compose"]
    assert compose() == catalog
    assert len(catalog) >= 300
    assert len({p["category"] for p in catalog}) == 10
    for p in catalog:
        assert {"brand", "color"} <= set(p["attributes"]) and p["price"] > 0


def test_walk_rules_hold_in_every_dialogue(dialogues):
    for d in dialogues:
        walk = d["meta"]["walk"]
        c = Counter(walk)
        assert c["search_product"] == 1 and c["greeting"] <= 1
        assert walk.index("search_product") <= 2
        assert c["more_results"] <= MAX_MORE_RESULTS
        assert c["answer_clarification"] <= MAX_CLARIFY and c["compare_products"] <= MAX_COMPARE
        assert c["add_to_cart"] <= MAX_CART and c["select_product"] <= 1
        cart = 0
        for prev, intent in zip([None] + walk, walk):
            if intent in ("remove_from_cart", "show_cart", "checkout"):
                assert cart > 0, walk
            if intent == "answer_clarification":
                assert prev in ("search_product", "answer_clarification")
            cart += (intent == "add_to_cart") - (intent == "remove_from_cart")
        assert set(walk) <= set(SHOP_INTENTS)


def test_results_are_grounded_and_slots_match_the_gold_product(dialogues, catalog):
    by_id = {p["id"]: p for p in catalog}
    selections = 0
    for d in dialogues:
        gold = by_id[d["meta"]["product_id"]]
        shown = []
        for user, system in zip(d["messages"][::2], d["messages"][1::2]):
            ann, act = user["annotations"], system["annotations"]["act"]
            if act == "ask_clarification":
                assert system["annotations"]["asked"] in ("color", "max_price", "brand")
            if "shown" in system["annotations"]:
                shown = system["annotations"]["shown"]
                assert 1 <= len(shown) <= 3
                assert all(by_id[i]["category"] == gold["category"] for i in shown)
            slots = ann["slots"]
            if ann["intent"] == "search_product":
                assert slots["query"] == gold["category"]
            if ann["intent"] == "answer_clarification":
                (name, value), = slots.items()
                assert value == (gold["attributes"][name] if name != "max_price" else value)
                if name == "max_price":
                    assert gold["price"] <= value
            if ann["intent"] == "select_product":
                selections += 1
                assert shown[slots["index"] - 1] == gold["id"]
                assert gold["title"] in system["content"]
            if ann["intent"] == "compare_products":
                i, j = slots["indices"]
                assert 1 <= i < j <= len(shown)
                assert by_id[shown[i - 1]]["title"] in system["content"]
    assert selections > 150


def test_deterministic_prefix_and_ablation(catalog):
    graph = load_graph(GRAPH)
    a = generate_shop_dialogues(catalog, graph, n=20, seed=5, max_turns=10)
    b = generate_shop_dialogues(catalog, graph, n=40, seed=5, max_turns=10)
    assert json.dumps(a) == json.dumps(b[:20])
    flat = generate_shop_dialogues(catalog, graph, n=300, seed=5, max_turns=10, use_graph=False)
    guided = generate_shop_dialogues(catalog, graph, n=300, seed=5, max_turns=10)
    walks_u = Counter(i for d in flat for i in d["meta"]["walk"])
    walks_g = Counter(i for d in guided for i in d["meta"]["walk"])
    # the graph leads shoppers to select and buy; a uniform draw wanders
    assert walks_g["select_product"] > walks_u["select_product"]
    assert all(d["meta"]["use_graph"] is False for d in flat)


def test_product_row_missing_a_field_names_the_file_and_item(tmp_path):
    rows = json.loads(PRODUCTS.read_text())[:4]
    del rows[2]["price"]
    path = tmp_path / "products.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(InputError, match=r"products.json: product #2 \(id 'p003'\) lacks price"):
        load_products(path)


def test_templates_are_rich():
    from synthtune.generate.dialogue.ecommerce_templates import CLARIFY, STORE_QUESTIONS, SYSTEM, USER

    assert all(len(v) >= 5 for v in USER.values())
    assert all(len(v) >= 5 for v in SYSTEM.values())
    assert all(len(q) >= 5 and len(a) >= 5 for q, a in CLARIFY.values())
    assert all(len(q) >= 5 for q, _ in STORE_QUESTIONS.values())


@pytest.mark.parametrize("domain, catalog", [("ecommerce", "products.json"), ("recipe", "recipes.json")])
def test_ablation_replaces_training_dialogues_only(domain, catalog):
    """`use_graph: false` changes the train split; val and test stay the graph's, so both arms of
    the ablation are scored on the very same test set."""
    from synthtune.core.config import PrepareParams, SourceParams
    from synthtune.curate.prepare import split_of
    from synthtune.generate.sources import generate_source

    def run(use_graph):
        source = SourceParams(kind="dialogues", path=f"data/seeds/{catalog}", domain=domain, n_dialogues=120,
                              max_turns=8, use_graph=use_graph)
        return generate_source("tod", source, ROOT / "data" / "seeds" / catalog, 42, prepare=PrepareParams()).records

    guided, ablated = run(True), run(False)
    held_out = [i for i, r in enumerate(guided) if split_of(r["group"], 42, PrepareParams()) != "train"]
    train = [i for i in range(len(guided)) if i not in held_out]
    assert held_out and all(guided[i] == ablated[i] for i in held_out)
    assert sum(guided[i] != ablated[i] for i in train) > len(train) // 2
    assert all(ablated[i]["meta"]["use_graph"] is False for i in train)
