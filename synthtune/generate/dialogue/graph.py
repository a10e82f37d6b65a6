"""State transition graphs: loading and checking them, and one weighted step of a walk.

A graph (data/seeds/graphs/<domain>.json) maps each state (a user intent) to weighted next
states: `start` holds the first states, `edges` the states after each state, and `common` the
states that may follow any other with a small weight (QA, chitchat, deny, ...).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.generate.dialogue.engine import domain_intents


def load_graph(path) -> dict:
    """Load a state transition graph and check it: every state defined, reachable, weights >= 0.

    Edges leave every state in `edges`; `start` holds the first states and `common` the states
    that may follow any other with a small weight. All states must be intents of the graph's
    `domain` (a registered one), have an `edges` entry (possibly empty), and be reachable from `start`.
    """
    try:
        with open(Path(path), encoding="utf-8") as fh:
            graph = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    for key in ("domain", "start", "edges"):
        if key not in graph:
            raise InputError(f"{path}: graph lacks {key!r}")
    graph.setdefault("common", {})
    known = set(domain_intents(graph["domain"]))
    tables = [("start", graph["start"]), ("common", graph["common"])]
    tables += [(f"edges.{state}", nxt) for state, nxt in graph["edges"].items()]
    for where, table in tables:
        for state, weight in table.items():
            if state not in known:
                raise InputError(f"{path}: {where}: state {state!r} is not an intent of domain "
                                 f"{graph['domain']!r}")
            if not isinstance(weight, (int, float)) or weight < 0:
                raise InputError(f"{path}: {where}.{state}: weight must be a number >= 0 (got {weight!r})")
            if state not in graph["edges"]:
                raise InputError(f"{path}: {where}: state {state!r} is undefined (no entry in edges)")
    reached, frontier = set(), [s for s, w in graph["start"].items() if w > 0]
    common = [s for s, w in graph["common"].items() if w > 0]
    while frontier:
        state = frontier.pop()
        if state in reached:
            continue
        reached.add(state)
        frontier += [s for s, w in graph["edges"][state].items() if w > 0] + common
    unreachable = sorted(set(graph["edges"]) - reached)
    if unreachable:
        raise InputError(f"{path}: state {unreachable[0]!r} is unreachable from start")
    return graph


def weighted_choice(rng: random.Random, items: list[tuple[str, float]]) -> str:
    """One name of `items` ((name, weight) pairs), drawn with one `rng.random()`."""
    total = sum(w for _, w in items)
    r = rng.random() * total
    acc = 0.0
    for name, w in items:
        acc += w
        if r < acc:
            return name
    return items[-1][0]


def choose_next(graph: dict | None, prev: str | None, allowed: list[str], rng: random.Random) -> str:
    """One step of the walk: the graph's weights out of `prev` (plus the common intents),
    restricted to the admissible intents and renormalised; uniform when `graph` is None."""
    if graph is None:  # no-graph ablation: uniform over the admissible intents
        return rng.choice(allowed)
    if prev is None:
        weights = dict(graph["start"])
    else:
        weights = dict(graph["edges"].get(prev, {}))
        for name, w in graph.get("common", {}).items():
            weights[name] = weights.get(name, 0.0) + w
    items = [(i, float(weights[i])) for i in allowed if weights.get(i, 0) > 0]
    if not items:
        return rng.choice(allowed)
    return weighted_choice(rng, items)
