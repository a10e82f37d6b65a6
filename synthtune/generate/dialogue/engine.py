"""The generic dialogue engine: the Domain base class, the DOMAINS registry and the generate loop.

A domain (recipe.py, ecommerce.py, ...) subclasses `Domain`, says what its catalog items hold
and how search matches them, walks its state graph (`walk_for`) and renders the walk into
messages (`render`); `register_domain` puts it in `DOMAINS`. Everything the domains share lives
here: the seeded per-dialogue loop (dialogue i depends only on (source, seed, i)), the no-graph
ablation with `keep_graph`, content-hash ids, result pages with the gold item placed on the page
the user picks from, and the discourse fillers of user turns. This module imports no domain.
"""
from __future__ import annotations

import hashlib
import json
import random

from synthtune.core.errors import InputError
from synthtune.generate.dialogue.catalog import read_catalog

PAGE_SIZE = 3   # results shown per page

# what the user does in intents any domain may have; a domain adds its own (voicing.py uses them)
GENERIC_USER_INSTRUCTIONS = {
    "greeting": "greets the assistant and opens the conversation",
    "more_results": "asks to see more results than those shown",
    "ask_question": "asks a question about the topic",
    "chitchat": "makes small talk unrelated to the task",
    "deny": "declines or rejects what was offered",
    "goodbye": "ends the conversation",
}
# voicing temperatures: 0 for system acts that show facts, higher for small talk (intents and acts)
GENERIC_FACT_ACTS = frozenset({"show_results", "show_more"})
GENERIC_CHATTY = frozenset({"greeting", "chitchat", "goodbye", "deny", "greet", "chitchat_reply", "farewell"})

# optional discourse fillers so that no intent is marked by its first word
_FILLERS = ("ok, ", "alright, ", "so ", "right, ", "great, ", "um, ", "okay so ")
_NO_FILLER = frozenset({"greeting"})


def canonical(obj) -> str:
    """The canonical JSON of `obj` (sorted keys, no spaces): what ids hash."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def record_id(messages: list[dict]) -> str:
    """The stable id of a dialogue: a hash of its canonical messages."""
    return hashlib.sha1(canonical(messages).encode("utf-8")).hexdigest()[:16]


def user_text(rng: random.Random, intent: str, template: str, **kw) -> str:
    """A user utterance from its template; one in five (not greetings) starts with a filler."""
    text = template.format(**kw)
    if intent not in _NO_FILLER and rng.random() < 0.2 and not text.startswith(("ok", "hmm", "um")):
        text = rng.choice(_FILLERS) + text
    return text


class Pager:
    """Pages of ranked search results with the gold item on the page the user picks from.

    That page is the last one shown: the first page plus one per `more_results` turn of the
    walk. The gold item's position on it is drawn from `rng` when the pager is made.
    """

    def __init__(self, gold: dict, states: list[dict], rng: random.Random, size: int = PAGE_SIZE):
        self.gold, self.size = gold, size
        self.gold_page = sum(1 for s in states if s["intent"] == "more_results")
        self.gold_pos = rng.randrange(size)

    def page(self, ranked: list[dict], k: int) -> list[dict]:
        """Page `k` (0-based) of `ranked` (which excludes the gold item)."""
        shown = ranked[k * self.size:(k + 1) * self.size]
        if k == self.gold_page:
            shown = (shown[:self.gold_pos] + [self.gold] + shown[self.gold_pos:])[:self.size]
        return shown


class Domain:
    """One dialogue domain. Subclasses set the class attributes and implement the three methods
    `item_text`, `walk_for` and `render`; `load_catalog` and `generate` come from here."""

    name: str = ""                                  # the `domain` of records, params and graphs
    intents: tuple[str, ...] = ()                   # the user intents its walk can produce (sorted)
    catalog_fields: tuple[str, ...] = ("id",)       # keys every catalog item must have
    item_kind: str = "item"                         # one catalog item in messages; meta key <kind>_id
    default_source: str = "tod"                     # source name when generate() is given none
    user_instructions: dict = GENERIC_USER_INSTRUCTIONS   # intent -> what the user does (voicing)
    fact_acts: frozenset = GENERIC_FACT_ACTS
    chatty: frozenset = GENERIC_CHATTY

    def load_catalog(self, path) -> list[dict]:
        """Load and check the domain's catalog (a JSON list of items with `catalog_fields`)."""
        return read_catalog(path, self.catalog_fields, self.item_kind)

    def item_text(self, item: dict) -> str:
        """What search (BM25) matches an item on."""
        raise NotImplementedError

    def walk_for(self, graph: dict | None, item: dict, rng: random.Random, max_turns: int) -> list[dict]:
        """The user turns of one dialogue about `item`: dicts with at least "intent" and "act" (the
        system act answering it). `graph=None` is the no-graph ablation."""
        raise NotImplementedError

    def render(self, item: dict, states: list[dict], index, rng: random.Random) -> list[dict]:
        """The walk as alternating user/assistant messages with annotations; `index` is the
        catalog's CatalogRetriever (`index.ranked(query, exclude=id)`)."""
        raise NotImplementedError

    def generate(self, catalog: list[dict], graph: dict, n: int, seed: int, max_turns: int,
                 source: str | None = None, use_graph: bool = True, keep_graph=None) -> list[dict]:
        """`n` canonical dialogue records, deterministic for a seed.

        Dialogue `i` only depends on `(source, seed, i)`, so a smaller `n` yields a prefix of a
        larger run. `use_graph=False` is the no-graph ablation (intents drawn uniformly among the
        admissible ones); `keep_graph(group)` true keeps the graph for that dialogue even then
        (the held-out ones: both arms of the ablation are scored on the same test set).
        """
        from synthtune.text.retrieval import CatalogRetriever

        if not catalog:
            raise ValueError("empty catalog")
        source = self.default_source if source is None else source
        index = CatalogRetriever(catalog, self.item_text)
        items = index.items  # sorted by id: independent of catalog order
        out = []
        for i in range(n):
            group = f"{source}-{i}"
            rng = random.Random(f"{source}:{seed}:{i}")
            item = rng.choice(items)
            guided = use_graph or bool(keep_graph and keep_graph(group))
            states = self.walk_for(graph if guided else None, item, rng, max_turns)
            messages = self.render(item, states, index, rng)
            out.append({
                "id": record_id(messages), "source": source, "domain": self.name, "group": group,
                "messages": messages,
                "meta": {f"{self.item_kind}_id": item["id"], "walk": [s["intent"] for s in states],
                         "generator": "template", "use_graph": guided},
            })
        return out


# ------------------------------------------------------------------------------------ registry

DOMAINS: dict[str, Domain] = {}


def register_domain(domain):
    """Register a Domain (a subclass, instantiated here, or an instance) under its `name`.
    Usable as a class decorator; returns what it was given."""
    instance = domain() if isinstance(domain, type) else domain
    if not instance.name or not instance.intents:
        raise ValueError(f"{type(instance).__name__}: a dialogue domain needs a name and intents")
    old = DOMAINS.get(instance.name)
    if old is not None and (type(old).__module__, type(old).__qualname__) != (
            type(instance).__module__, type(instance).__qualname__):
        raise ValueError(f"dialogue domain {instance.name!r} is already registered by {type(old).__module__}")
    DOMAINS[instance.name] = instance
    return domain


def get_domain(name: str) -> Domain:
    """The registered domain `name`; an unknown name is an InputError listing the known ones."""
    try:
        return DOMAINS[name]
    except KeyError:
        raise InputError(f"unknown dialogue domain {name!r} (known: {', '.join(sorted(DOMAINS))})") from None


def domain_intents(name: str) -> tuple[str, ...]:
    """The user intents a domain's simulator can render."""
    return tuple(get_domain(name).intents)
