"""The dialogue engine and its DOMAINS registry: a domain is one file plus its registration.

A throwaway third domain (a library: find a book, borrow it) is defined here, in a few lines,
with a tiny catalog and graph written to tmp_path, and generates dialogues through get_domain.
"""
import ast
import inspect
import json
import random
import sys
from pathlib import Path

import pytest

from synthtune.core.errors import InputError
from synthtune.generate import dialogue
from synthtune.generate.dialogue import DOMAINS, domain_intents, get_domain, load_graph, register_domain
from synthtune.generate.dialogue.engine import Domain, Pager, user_text
from synthtune.generate.dialogue.graph import choose_next
from synthtune.generate.dialogue.voicing import turn_requests
from synthtune.llm.teacher import ChatRequest

ROOT = Path(__file__).resolve().parents[3]
SEEDS = ROOT / "data" / "seeds"


class LibraryDomain(Domain):
    """The whole of a domain: intents, catalog fields, what search matches, walk rules, rendering."""

    name = "library"
    intents = ("borrow", "goodbye", "greeting", "more_results", "search_book")
    catalog_fields = ("id", "title", "author")
    item_kind = "book"
    default_source = "library_tod"
    user_instructions = {**Domain.user_instructions, "search_book": "asks for books by an author",
                         "borrow": "asks to borrow the shown book by its number"}

    def item_text(self, item):
        return f"{item['title']} {item['author']}"

    def walk_for(self, graph, item, rng, max_turns):
        states, prev, n_more = [], None, 0
        while len(states) < max_turns and prev != "goodbye":
            allowed = {None: ["greeting", "search_book"], "greeting": ["search_book"]}.get(
                prev, ["borrow", "goodbye"] + (["more_results"] if n_more < 2 and prev != "borrow" else []))
            prev = choose_next(graph, prev, allowed, rng)
            n_more += prev == "more_results"
            states.append({"intent": prev, "act": {"greeting": "greet", "borrow": "lent"}.get(prev, "show_results")})
        return states

    def render(self, item, states, index, rng):
        ranked = index.ranked(item["author"], exclude=item["id"])
        pager, page, shown, messages = Pager(item, states, rng), -1, [], []
        for s in states:
            slots, ann = {}, {"act": s["act"]}
            if s["intent"] in ("search_book", "more_results"):
                page += 1
                shown = pager.page(ranked, page)
                ann["shown"] = [b["id"] for b in shown]
                slots = {"author": item["author"]} if s["intent"] == "search_book" else {}
                user, system = f"books by {item['author']}?", " ".join(f"{j}. {b['title']}" for j, b in enumerate(shown, 1))
            elif s["intent"] == "borrow":
                slots = {"index": next(j for j, b in enumerate(shown, 1) if b["id"] == item["id"])}
                user, system = f"I'd like number {slots['index']}", f"{item['title']} is yours for three weeks."
            else:
                user, system = s["intent"].replace("_", " "), "Hello!" if s["intent"] == "greeting" else "Bye."
            messages.append({"role": "user", "content": user_text(rng, s["intent"], user),
                             "annotations": {"intent": s["intent"], "slots": slots}})
            messages.append({"role": "assistant", "content": system, "annotations": ann})
        return messages


@pytest.fixture
def library(tmp_path):
    register_domain(LibraryDomain)
    books = [{"id": f"b{n:02d}", "title": f"Book {n}", "author": ["Austen", "Borges", "Calvino"][n % 3]}
             for n in range(12)]
    (tmp_path / "books.json").write_text(json.dumps(books))
    graph = {"domain": "library", "start": {"greeting": 0.5, "search_book": 0.5},
             "edges": {"greeting": {"search_book": 1}, "search_book": {"borrow": 0.6, "more_results": 0.4},
                       "more_results": {"borrow": 0.7, "more_results": 0.3}, "borrow": {"goodbye": 1},
                       "goodbye": {}}}
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "library.json").write_text(json.dumps(graph))
    yield tmp_path
    DOMAINS.pop("library")


def test_a_third_domain_is_one_class_plus_its_registration(library):
    domain = get_domain("library")
    assert isinstance(domain, LibraryDomain) and domain_intents("library") == LibraryDomain.intents
    catalog = domain.load_catalog(library / "books.json")
    graph = load_graph(library / "graphs" / "library.json")     # checked against the domain's intents
    records = domain.generate(catalog, graph, n=30, seed=4, max_turns=6)
    assert len(records) == 30 and len({r["id"] for r in records}) > 1
    for i, r in enumerate(records):
        assert (r["source"], r["domain"], r["group"]) == ("library_tod", "library", f"library_tod-{i}")
        assert r["meta"]["generator"] == "template" and r["meta"]["use_graph"] is True
        assert r["meta"]["walk"] == [m["annotations"]["intent"] for m in r["messages"][::2]]
        walk = r["meta"]["walk"]
        assert walk.count("search_book") == 1 and set(walk) <= set(domain.intents)
    assert any("borrow" in r["meta"]["walk"] for r in records)
    # deterministic, and a shorter run is a prefix
    assert json.dumps(domain.generate(catalog, graph, n=10, seed=4, max_turns=6)) == json.dumps(records[:10])
    # the ablation through the engine: keep_graph keeps the graph for the groups it names
    flat = domain.generate(catalog, graph, n=30, seed=4, max_turns=6, source="abl", use_graph=False,
                           keep_graph=lambda group: group.endswith("-0"))
    assert [r["meta"]["use_graph"] for r in flat] == [True] + [False] * 29
    # the voicing layer reads the domain's own instructions
    prompts = [q.messages[0]["content"] for q in turn_requests(records[0], "library", ChatRequest)]
    assert any("asks for books by an author" in p for p in prompts if "intent: search_book" in p)


def test_gold_book_is_on_the_page_it_is_borrowed_from(library):
    domain = get_domain("library")
    catalog = domain.load_catalog(library / "books.json")
    records = domain.generate(catalog, load_graph(library / "graphs" / "library.json"), n=40, seed=1, max_turns=6)
    borrowed = 0
    for r in records:
        walk = r["meta"]["walk"]
        if "borrow" not in walk:
            continue
        borrowed += 1
        j = walk.index("borrow") * 2
        pages = [m["annotations"]["shown"] for m in r["messages"][:j] if "shown" in m["annotations"]]
        k = r["messages"][j]["annotations"]["slots"]["index"]
        assert pages[-1][k - 1] == r["meta"]["book_id"]
        assert all(r["meta"]["book_id"] not in p for p in pages[:-1]) and all(len(p) == 3 for p in pages)
    assert borrowed > 10


def test_registry_holds_the_shipped_domains():
    assert {"recipe", "ecommerce"} <= set(DOMAINS)
    for name, domain in DOMAINS.items():
        assert domain.name == name and isinstance(domain.intents, tuple)
        assert list(domain.intents) == sorted(domain.intents) and domain_intents(name) == domain.intents
    assert len(get_domain("recipe").load_catalog(SEEDS / "recipes.json")) >= 150
    assert len(get_domain("ecommerce").load_catalog(SEEDS / "products.json")) >= 300
    for path in sorted((SEEDS / "graphs").glob("*.json")):
        assert load_graph(path)["domain"] in DOMAINS


def test_unknown_domain_names_the_known_ones():
    with pytest.raises(InputError, match=r"unknown dialogue domain 'space' \(known: ecommerce, recipe"):
        get_domain("space")
    with pytest.raises(InputError, match="unknown dialogue domain 'space'"):
        domain_intents("space")


def test_a_name_is_registered_once():
    class Impostor(Domain):
        name, intents = "recipe", ("greeting",)

    with pytest.raises(ValueError, match="already registered"):
        register_domain(Impostor)
    assert type(DOMAINS["recipe"]).__name__ == "RecipeDomain"


def test_old_import_path_of_load_graph_still_works():
    # synthtune/evaluate/scorecard.py imports it from the recipe module
    from synthtune.generate.dialogue.recipe import load_graph as old

    assert old is load_graph


def test_no_domain_imports_another_and_the_engine_imports_none():
    domain_files = {Path(inspect.getfile(type(d))).stem for d in DOMAINS.values()}
    package = Path(dialogue.__file__).parent
    for path in package.glob("*.py"):
        if path.name == "__init__.py":
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("synthtune.generate.dialogue"):
                imported.add(node.module.rsplit(".", 1)[-1])
                imported.update(a.name for a in node.names)
        others = {m for m in domain_files if m != path.stem and (m in imported or f"{m}_templates" in imported)}
        if path.stem.endswith("_templates"):
            others.discard(path.stem[:-len("_templates")])
        assert not others, f"{path.name} imports the domain(s) {sorted(others)}"
    assert "synthtune.generate.dialogue.recipe" in sys.modules   # registered on import of the package


def test_walk_helpers_are_reproducible():
    graph = load_graph(SEEDS / "graphs" / "recipe.json")
    draws = [choose_next(graph, "search_recipe", ["select_recipe", "more_results", "goodbye"], random.Random(s))
             for s in range(200)]
    assert set(draws) == {"select_recipe", "more_results", "goodbye"}
    assert draws == [choose_next(graph, "search_recipe", ["select_recipe", "more_results", "goodbye"],
                                 random.Random(s)) for s in range(200)]
