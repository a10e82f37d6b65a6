"""The recipe domain of the graph-guided task-oriented dialogues (SynTOD).

A seeded random walk over the state graph data/seeds/graphs/recipe.json picks the user intents
(rules below keep every walk a coherent dialogue), and each turn is rendered from the paraphrase
templates of recipe_templates.py filled with values from the recipe catalog
(data/seeds/recipes.json). This is the offline "template" simulator: no model is involved,
everything is derived from the walk, the catalog and a ``random.Random``. Walk rules:
- exactly one search per dialogue (forced at the third turn, or the last one if sooner); at most
  MAX_MORE_RESULTS "more results" pages;
- ingredients, timers and questions only after a recipe is selected; steps only once cooking;
  a next_step past the last step is answered "no more steps"; go-to-step jumps to another step;
- at most MAX_CHITCHAT_DENY chitchat/deny turns; side intents never follow themselves.

Search results come from BM25 retrieval over the catalog (synthtune.text.retrieval, bm25s) with
a query taken from the gold recipe; the gold recipe goes on the page the user picks from. The
loop, ids and paging are the engine's (engine.py).
"""

from __future__ import annotations

import random
import re

from synthtune.generate.dialogue.engine import PAGE_SIZE, Domain, Pager, register_domain, user_text
from synthtune.generate.dialogue.graph import choose_next, load_graph  # noqa: F401  (load_graph: old import path)
from synthtune.generate.dialogue.recipe_templates import QUESTIONS, SEARCH_BY_KIND, STEP_TEMPLATES, SYSTEM, USER

INTENTS: tuple[str, ...] = tuple(sorted((
    "greeting", "search_recipe", "more_results", "select_recipe", "show_ingredients", "start_cooking",
    "next_step", "previous_step", "go_to_step", "repeat_step", "set_timer", "ask_question", "chitchat",
    "deny", "goodbye",
)))
SYSTEM_ACTS: tuple[str, ...] = tuple(sorted((
    "greet", "show_results", "show_more", "confirm_selection", "ingredients", "step", "no_more_steps",
    "timer_set", "answer", "chitchat_reply", "acknowledge_deny", "farewell",
)))
STEP_INTENTS = frozenset({"next_step", "previous_step", "go_to_step", "repeat_step"})

# system act answering each user intent (next_step past the end -> no_more_steps)
_ACT_FOR = {
    "greeting": "greet", "search_recipe": "show_results", "more_results": "show_more",
    "select_recipe": "confirm_selection", "show_ingredients": "ingredients", "start_cooking": "step",
    "next_step": "step", "previous_step": "step", "go_to_step": "step", "repeat_step": "step",
    "set_timer": "timer_set", "ask_question": "answer", "chitchat": "chitchat_reply",
    "deny": "acknowledge_deny", "goodbye": "farewell",
}

MAX_MORE_RESULTS = 2
MAX_CHITCHAT_DENY = 2  # chitchat + deny turns per dialogue
# side intents that never follow themselves directly
_NO_REPEAT = frozenset({"ask_question", "chitchat", "deny", "set_timer"})
_TIMER_CHOICES = (2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 45)

RECIPE_FIELDS = ("id", "title", "cuisine", "minutes", "ingredients", "steps")

# ------------------------------------------------------------------------------------ the walk


class _State:
    __slots__ = ("turn", "searched", "selected", "cooking", "step", "done", "n_more", "prev", "n_common")

    def __init__(self):
        self.turn = 0
        self.searched = False
        self.selected = False
        self.cooking = False
        self.step = 0          # current step (1-based) once cooking
        self.done = False      # a next_step past the last step happened
        self.n_more = 0
        self.prev = None       # previous intent
        self.n_common = 0      # chitchat / deny turns so far


def _allowed(intent: str, st: _State, n_steps: int) -> bool:
    """Preconditions that keep every walk a coherent dialogue."""
    if intent in _NO_REPEAT and intent == st.prev:
        return False
    if intent in ("chitchat", "deny") and st.n_common >= MAX_CHITCHAT_DENY:
        return False
    if intent == "greeting":
        return st.turn == 0
    if intent == "search_recipe":
        return not st.searched
    if intent == "more_results":
        return st.searched and not st.selected and st.n_more < MAX_MORE_RESULTS
    if intent == "select_recipe":
        return st.searched and not st.selected
    if intent in ("show_ingredients", "set_timer", "ask_question"):
        return st.selected
    if intent == "start_cooking":
        return st.selected and not st.cooking
    if intent == "next_step":
        return st.cooking and not st.done
    if intent == "previous_step":
        return st.cooking and st.step > 1
    if intent == "go_to_step":
        return st.cooking and n_steps >= 2
    if intent == "repeat_step":
        return st.cooking
    if intent == "chitchat":
        return st.turn > 0
    if intent in ("deny", "goodbye"):
        return st.searched
    return False


def _next_intent(graph: dict | None, prev: str | None, st: _State, rng: random.Random,
                 n_steps: int, max_turns: int) -> str:
    # exactly one search per dialogue: force it if it is getting late
    if not st.searched and (st.turn >= 2 or st.turn >= max_turns - 1):
        return "search_recipe"
    allowed = [i for i in INTENTS if _allowed(i, st, n_steps)]
    return choose_next(graph, prev, allowed, rng)


def walk(graph: dict, rng: random.Random, max_turns: int, n_steps: int) -> list[dict]:
    """Random walk over the intent graph; returns the user states of one dialogue.

    Each element is ``{"intent", "slots_hint", "act", "step"}`` where ``act`` is
    the system act that answers the turn and ``step`` is the current recipe
    step after the turn (0 before cooking starts).  Pass ``graph=None`` for the
    no-graph ablation (uniform choice among the admissible intents).
    """
    if max_turns < 1:
        raise ValueError("max_turns must be >= 1")
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    st = _State()
    out: list[dict] = []
    prev = None
    while st.turn < max_turns:
        intent = _next_intent(graph, prev, st, rng, n_steps, max_turns)
        hint: dict = {}
        act = _ACT_FOR[intent]
        if intent == "search_recipe":
            st.searched = True
        elif intent == "more_results":
            st.n_more += 1
        elif intent == "select_recipe":
            st.selected = True
        elif intent == "start_cooking":
            st.cooking = True
            st.step = 1
        elif intent == "next_step":
            if st.step >= n_steps:
                act = "no_more_steps"
                st.done = True
            else:
                st.step += 1
        elif intent == "previous_step":
            st.step -= 1
            st.done = False
        elif intent == "go_to_step":
            k = rng.choice([j for j in range(1, n_steps + 1) if j != st.step])
            hint = {"step": k}
            st.step = k
            st.done = False
        elif intent == "set_timer":
            hint = {"minutes": rng.choice(_TIMER_CHOICES)}
        elif intent in ("chitchat", "deny"):
            st.n_common += 1
        out.append({"intent": intent, "slots_hint": hint, "act": act, "step": st.step})
        st.turn += 1
        st.prev = prev = intent
        if intent == "goodbye":
            break
    return out


# ------------------------------------------------------------------------------------ queries and search

_UNITS = frozenset("""g kg ml l litre litres tbsp tsp cup cups tin tins can cans pinch handful bunch
clove cloves sprig sprigs large small medium knob sheet nests nest thumb few a of""".split())
_STOP = frozenset("""a an and with of the to in for on easy g kg ml tbsp tsp tin into cut drained sliced
cubed diced chopped grated halved serve thinly""".split())
_TIMER_RE = re.compile(r"\b(\d+) minutes\b")


def ingredient_name(line: str) -> str:
    """'400 g tin chickpeas, drained' -> 'chickpeas'; '2 salmon fillets' -> 'salmon fillets'."""
    head = line.split(",")[0].strip()
    words = head.split()
    while words and (re.fullmatch(r"[\d/.]+", words[0]) or words[0].lower() in _UNITS):
        words.pop(0)
    return " ".join(words) if words else head


def _query_options(recipe: dict) -> list[tuple[str, str]]:
    """Candidate (kind, query) pairs for a recipe; every query is a phrase taken from it."""
    opts = [("ingredient", ingredient_name(recipe["ingredients"][0]).lower())]
    opts.append(("cuisine", recipe["cuisine"]))
    for w in re.findall(r"[A-Za-z][A-Za-z'-]*", recipe["title"]):
        lw = w.lower()
        if len(lw) >= 4 and lw not in _STOP:
            opts.append(("title", lw))
    return opts


def recipe_text(recipe: dict) -> str:
    """What search matches a recipe on: title (twice: it weighs most), cuisine, ingredients."""
    return " ".join([recipe["title"], recipe["title"], recipe["cuisine"]] + list(recipe["ingredients"]))


# ------------------------------------------------------------------------------------ rendering


def _page_text(items: list[dict]) -> str:
    return " ".join(f"{j}. {r['title']} ({r['minutes']} min)" for j, r in enumerate(items, 1))


def _render(recipe: dict, states: list[dict], index, rng: random.Random) -> list[dict]:
    n_steps = len(recipe["steps"])
    fmt = {"title": recipe["title"], "minutes": recipe["minutes"], "n_steps": n_steps,
           "n_ing": len(recipe["ingredients"])}
    kind, query = rng.choice(_query_options(recipe))
    ranked = index.ranked(query, exclude=recipe["id"])
    # the gold recipe goes on the page from which it is selected (the last page shown)
    pager = Pager(recipe, states, rng, PAGE_SIZE)
    page = -1
    shown: list[dict] = []
    messages: list[dict] = []
    for s in states:
        intent, hint = s["intent"], s["slots_hint"]
        slots: dict = {}
        ann: dict = {"act": s["act"]}
        if intent == "search_recipe" or intent == "more_results":
            page += 1
            shown = pager.page(ranked, page)
            ann["shown"] = [r["id"] for r in shown]
            if intent == "search_recipe":
                slots = {"query": query}
                tmpl = rng.choice(USER["search_recipe"] + SEARCH_BY_KIND[kind])
                user = user_text(rng, intent, tmpl, q=query)
            else:
                user = user_text(rng, intent, rng.choice(USER[intent]))
            system = rng.choice(SYSTEM[s["act"]]).format(list=_page_text(shown), q=query)
        elif intent == "select_recipe":
            idx = next((j for j, r in enumerate(shown, 1) if r["id"] == recipe["id"]), 1)
            slots = {"index": idx}
            user = user_text(rng, intent, rng.choice(USER[intent]), i=idx)
            ann["recipe_id"] = recipe["id"]
            system = rng.choice(SYSTEM["confirm_selection"]).format(**fmt)
        elif intent == "show_ingredients":
            user = user_text(rng, intent, rng.choice(USER[intent]))
            system = rng.choice(SYSTEM["ingredients"]).format(ings="; ".join(recipe["ingredients"]), **fmt)
        elif intent == "start_cooking" or intent in STEP_INTENTS:
            if intent == "go_to_step":
                slots = {"step": hint["step"]}
                user = user_text(rng, intent, rng.choice(USER[intent]), k=hint["step"])
            else:
                user = user_text(rng, intent, rng.choice(USER[intent]))
            if s["act"] == "no_more_steps":
                system = rng.choice(SYSTEM["no_more_steps"]).format(**fmt)
            else:
                k = s["step"]
                ann["step"] = k
                system = rng.choice(STEP_TEMPLATES[intent]).format(
                    k=k, text=recipe["steps"][k - 1], **fmt)
        elif intent == "set_timer":
            minutes = hint.get("minutes", 10)
            if s["step"] >= 1 and rng.random() < 0.7:
                m = _TIMER_RE.search(recipe["steps"][s["step"] - 1])
                if m and int(m.group(1)) > 1:
                    minutes = int(m.group(1))
            slots = {"minutes": minutes}
            user = user_text(rng, intent, rng.choice(USER[intent]), m=minutes)
            system = rng.choice(SYSTEM["timer_set"]).format(m=minutes)
        elif intent == "ask_question":
            qkind, utmpl, atmpl = rng.choice(QUESTIONS)
            topic = ""
            if qkind == "substitute":
                topic = ingredient_name(rng.choice(recipe["ingredients"][1:] or recipe["ingredients"]))
                slots = {"topic": topic}
                ann["topic"] = topic
            ann["question"] = qkind
            user = user_text(rng, intent, rng.choice(utmpl), t=topic)
            system = rng.choice(atmpl).format(t=topic, **fmt)
        else:  # greeting, chitchat, deny, goodbye
            user = user_text(rng, intent, rng.choice(USER[intent]))
            system = rng.choice(SYSTEM[s["act"]]).format(**fmt)
        messages.append({"role": "user", "content": user,
                         "annotations": {"intent": intent, "slots": slots}})
        messages.append({"role": "assistant", "content": system, "annotations": ann})
    return messages


# ------------------------------------------------------------------------------------ the domain


class RecipeDomain(Domain):
    """Find a recipe, read its ingredients and cook it step by step, with timers and questions."""

    name = "recipe"
    intents = INTENTS
    catalog_fields = RECIPE_FIELDS
    item_kind = "recipe"
    default_source = "recipe_tod"
    user_instructions = {
        **Domain.user_instructions,
        "search_recipe": "asks to search for recipes matching the query",
        "select_recipe": "picks one of the shown results by its number",
        "show_ingredients": "asks for the ingredient list",
        "start_cooking": "says they are ready to start cooking",
        "next_step": "asks for the next step",
        "previous_step": "asks to go back one step",
        "go_to_step": "asks to jump to the given step number",
        "repeat_step": "asks to repeat the current step",
        "set_timer": "asks for a timer of the given minutes",
    }
    fact_acts = Domain.fact_acts | {"step", "ingredients", "no_more_steps"}

    def item_text(self, item: dict) -> str:
        return recipe_text(item)

    def walk_for(self, graph, item, rng, max_turns):
        return walk(graph, rng, max_turns, len(item["steps"]))

    def render(self, item, states, index, rng):
        return _render(item, states, index, rng)


RECIPE = register_domain(RecipeDomain())
# names of the old module API, still imported by bench/train_throughput.py (and load_graph above
# by synthtune/evaluate/scorecard.py); new code uses get_domain("recipe") and the package's load_graph
load_catalog = RECIPE.load_catalog
generate_dialogues = RECIPE.generate
