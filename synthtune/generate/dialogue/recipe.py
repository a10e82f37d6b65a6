"""Graph-guided synthetic task-oriented dialogues for the recipe domain.

The generator follows the SynTOD recipe: a state transition graph maps each
user intent to weighted next intents, a seeded random walk over that graph
picks the sequence of user intents, and every turn is then rendered from
paraphrase templates filled with values from a recipe catalog.  This is the
offline "template" simulator: no model is involved, everything is derived
from the walk, the catalog and a ``random.Random``.

Only the Python standard library is used.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.text.retrieval import CatalogRetriever

# --------------------------------------------------------------------------
# intents and system acts
# --------------------------------------------------------------------------

INTENTS: tuple[str, ...] = tuple(sorted((
    "greeting",
    "search_recipe",
    "more_results",
    "select_recipe",
    "show_ingredients",
    "start_cooking",
    "next_step",
    "previous_step",
    "go_to_step",
    "repeat_step",
    "set_timer",
    "ask_question",
    "chitchat",
    "deny",
    "goodbye",
)))

SYSTEM_ACTS: tuple[str, ...] = tuple(sorted((
    "greet",
    "show_results",
    "show_more",
    "confirm_selection",
    "ingredients",
    "step",
    "no_more_steps",
    "timer_set",
    "answer",
    "chitchat_reply",
    "acknowledge_deny",
    "farewell",
)))

STEP_INTENTS = frozenset({"next_step", "previous_step", "go_to_step", "repeat_step"})

# system act answering each user intent (next_step past the end -> no_more_steps)
_ACT_FOR = {
    "greeting": "greet",
    "search_recipe": "show_results",
    "more_results": "show_more",
    "select_recipe": "confirm_selection",
    "show_ingredients": "ingredients",
    "start_cooking": "step",
    "next_step": "step",
    "previous_step": "step",
    "go_to_step": "step",
    "repeat_step": "step",
    "set_timer": "timer_set",
    "ask_question": "answer",
    "chitchat": "chitchat_reply",
    "deny": "acknowledge_deny",
    "goodbye": "farewell",
}

PAGE_SIZE = 3
MAX_MORE_RESULTS = 2
MAX_CHITCHAT_DENY = 2  # chitchat + deny turns per dialogue
# side intents that never follow themselves directly
_NO_REPEAT = frozenset({"ask_question", "chitchat", "deny", "set_timer"})
_TIMER_CHOICES = (2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 45)

# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


RECIPE_FIELDS = ("id", "title", "cuisine", "minutes", "ingredients", "steps")


def read_catalog(path, fields: tuple[str, ...], kind: str) -> list[dict]:
    """A JSON list of catalog items, each with `fields`; errors name the file and the item."""
    try:
        with open(Path(path), encoding="utf-8") as fh:
            catalog = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(catalog, list) or not catalog:
        raise InputError(f"{path}: the catalog must be a non-empty JSON list of {kind}s")
    seen = set()
    for n, item in enumerate(catalog):
        name = f"{kind} #{n} (id {item.get('id')!r})" if isinstance(item, dict) else f"{kind} #{n}"
        if not isinstance(item, dict):
            raise InputError(f"{path}: {name} is not an object")
        missing = [key for key in fields if key not in item or item[key] in (None, "", [])]
        if missing:
            raise InputError(f"{path}: {name} lacks {', '.join(missing)}")
        if item["id"] in seen:
            raise InputError(f"{path}: {name}: duplicate id")
        seen.add(item["id"])
    return catalog


def load_catalog(path) -> list[dict]:
    """Load and check the recipe catalog (a JSON list of recipes)."""
    return read_catalog(path, RECIPE_FIELDS, "recipe")


def domain_intents(domain: str) -> tuple[str, ...]:
    """The user intents a domain's simulator can render."""
    if domain == "recipe":
        return INTENTS
    if domain == "ecommerce":
        from synthtune.generate.dialogue.ecommerce import SHOP_INTENTS
        return SHOP_INTENTS
    raise InputError(f"unknown dialogue domain {domain!r} (known: recipe, ecommerce)")


def load_graph(path) -> dict:
    """Load a state transition graph and check it: every state defined, reachable, weights >= 0.

    Edges leave every state in `edges`; `start` holds the first states and `common` the states
    that may follow any other with a small weight. All states must be intents of the graph's
    `domain`, have an `edges` entry (possibly empty), and be reachable from `start`.
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
    return _weighted_choice(rng, items)


# --------------------------------------------------------------------------
# the walk
# --------------------------------------------------------------------------


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


def _weighted_choice(rng: random.Random, items: list[tuple[str, float]]) -> str:
    total = sum(w for _, w in items)
    r = rng.random() * total
    acc = 0.0
    for name, w in items:
        acc += w
        if r < acc:
            return name
    return items[-1][0]


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


# --------------------------------------------------------------------------
# templates
# --------------------------------------------------------------------------

_USER = {
    "greeting": [
        "hi", "hello there", "hey, can you help me cook something?", "good evening!",
        "hi, I need some dinner ideas", "morning! I want to cook something today",
    ],
    "search_recipe": [  # generic, work for any query
        "I'm looking for a {q} recipe", "any good {q} recipes?", "can you search for {q}",
        "show me some {q} dishes", "what {q} recipes do you have?", "I'd like to cook something {q} tonight",
        "recipes with {q} please",
    ],
    "more_results": [
        "show me more", "any other options?", "what else have you got?", "can I see a few more?",
        "none of these, next page please", "more results please", "let's see some others",
    ],
    "select_recipe": [
        "let's go with number {i}", "I'll take {i}", "number {i} sounds good", "option {i} please",
        "can we do {i}?", "{i} looks tasty", "I'd like #{i}", "let me try number {i}",
    ],
    "show_ingredients": [
        "what ingredients do I need?", "show me the ingredients", "can you list what I need?",
        "what do I need to buy for this?", "ingredients please", "what goes into it?",
        "ok, so what do I need?",
    ],
    "start_cooking": [
        "let's start cooking", "ok I'm ready, what's the first step?", "how do I start?", "can we begin?",
        "take me through the steps", "start please", "I'm ready to cook",
    ],
    "next_step": [
        "what's next", "ok next step please", "done, what now?", "next", "and then?",
        "I've done that, what's the next step?", "go on", "can we move on?",
    ],
    "previous_step": [
        "go back one step", "what was the previous step?", "can you repeat the step before?", "back please",
        "I missed the last one, go back", "previous step", "ok, one step back",
    ],
    "go_to_step": [
        "go to step {k}", "jump to step {k}", "what's step {k}?", "can you read step {k}?",
        "take me to step {k}", "skip to step {k} please", "I want step {k}",
    ],
    "repeat_step": [
        "can you repeat that?", "say that again please", "what was that again?", "sorry, I didn't catch that",
        "repeat the current step", "one more time please", "ok, could you read it again?",
    ],
    "set_timer": [
        "set a timer for {m} minutes", "can you start a {m} minute timer?", "timer for {m} minutes please",
        "remind me in {m} minutes", "could you time {m} minutes for me", "please count down {m} minutes",
        "I need a {m} minute timer",
    ],
    "chitchat": [
        "you're really helpful", "I love cooking on weekends", "how's your day going?",
        "this is my first time making this", "my kitchen is such a mess right now", "I hope this turns out well",
        "can you believe how hungry I am?", "ok, the kids are going to love this",
    ],
    "deny": [
        "no, not that", "actually, never mind", "hmm, none of those", "that's not what I wanted", "nope",
        "no thanks", "I don't think so", "can we not do that?",
    ],
    "goodbye": [
        "thanks, bye!", "that's all for now, goodbye", "ok I'm done, thank you", "see you later",
        "great, that's everything. bye", "I'll stop here, thanks", "can we stop here? bye",
    ],
}

# extra search templates that only fit some kinds of query
_SEARCH_BY_KIND = {
    "ingredient": [
        "find me something with {q}", "what can I make with {q}?", "I have some {q}, any ideas?",
        "ok, I need a recipe that uses {q}", "got anything with {q} in it?",
    ],
    "cuisine": [
        "I fancy something {q}", "I'm in the mood for {q} food", "find me a {q} dish",
        "what {q} food can I make?", "something {q} for dinner?",
    ],
    "title": [
        "find me something {q}", "I'm in the mood for something {q}", "what {q} dishes can I make?",
        "do you have anything {q}?", "ok, {q} sounds good, what do you have?",
    ],
}

# ask_question: (kind, user templates, answer templates); {t} is the topic slot
_QUESTIONS = [
    ("substitute",
     ["what can I use instead of {t}?", "do I really need the {t}?", "is there a substitute for {t}?",
      "I'm out of {t}, what should I do?", "can I leave out the {t}?"],
     ["You can swap the {t} for something similar you have on hand; it will still work.",
      "The {t} isn't essential, so feel free to skip it or use a substitute.",
      "If you don't have {t}, just use a similar ingredient and adjust the seasoning.",
      "Leaving out the {t} changes the flavour a little, but the recipe still works.",
      "No {t}? No problem, the dish will still be tasty without it."]),
    ("time",
     ["how long does this take in total?", "how much time will this take?", "is this quick to make?"],
     ["It takes about {minutes} minutes in total.", "Plan for roughly {minutes} minutes from start to finish.",
      "All in, it's about {minutes} minutes."]),
    ("store",
     ["can I freeze the leftovers?", "how long will leftovers keep?", "can I make this ahead?"],
     ["Leftovers keep in the fridge for up to 2 days, and most of it freezes well.",
      "You can make it a day ahead; reheat until piping hot.",
      "Cool it quickly, then keep it covered in the fridge for up to 2 days."]),
    ("serve",
     ["how many people does this serve?", "is this enough for four?", "what should I serve with it?"],
     ["It serves about 4 people.", "It makes around 4 portions; a simple green salad goes well with it.",
      "Enough for 4, or 2 with leftovers for lunch."]),
    ("doneness",
     ["how do I know when it's done?", "how can I tell it's cooked?", "what should it look like at this point?"],
     ["It's ready when everything is piping hot and cooked through.",
      "Check that it's hot all the way through and looks golden where it should.",
      "Trust your eyes and a quick taste: it should be hot, tender and well seasoned."]),
    ("steps",
     ["how many steps are there?", "how many steps does this recipe have?", "is this a long recipe?"],
     ["There are {n_steps} steps in total.", "It's {n_steps} steps from start to finish.",
      "Just {n_steps} steps, nothing too complicated."]),
]

_SYSTEM = {
    "greet": [
        "Hi! What would you like to cook today?",
        "Hello! I can find a recipe and walk you through it. What are you in the mood for?",
        "Hey there! What shall we cook?", "Hi, I'm your cooking assistant. What would you like to make?",
        "Good to see you! Looking for something to cook?",
    ],
    "show_results": [
        "Here are some recipes: {list}", "I found these: {list}. Which one sounds good?",
        "How about one of these? {list}", "Here's what I found for \"{q}\": {list}",
        "These match {q}: {list}. Pick a number to choose.",
    ],
    "show_more": [
        "Here are a few more: {list}", "Some other options: {list}", "More results: {list}. Any of these?",
        "Okay, next page: {list}", "Sure, how about these instead? {list}",
    ],
    "confirm_selection": [
        "Great choice: {title}. It takes about {minutes} minutes. Would you like the ingredients or shall we start cooking?",
        "{title} it is! It needs {n_ing} ingredients and about {minutes} minutes.",
        "Okay, let's make {title}. Do you want to see the ingredients first?",
        "You picked {title} ({minutes} min, {n_steps} steps). Ready when you are.",
        "Nice, {title} is a good one. Shall I list what you'll need?",
    ],
    "ingredients": [
        "You'll need: {ings}.", "Here's the ingredient list: {ings}.", "For {title} you need: {ings}.",
        "Ingredients: {ings}. Let me know when you want to start.", "Grab these: {ings}.",
    ],
    "no_more_steps": [
        "That was the last step. Enjoy your {title}!", "You're all done, there are no more steps. Enjoy!",
        "That's everything: {title} is ready.", "No more steps, that was step {n_steps} of {n_steps}. Enjoy your meal!",
        "We've finished all the steps. Time to eat!",
    ],
    "timer_set": [
        "Timer set for {m} minutes.", "Okay, {m} minute timer started.", "Done, I'll let you know in {m} minutes.",
        "Your timer is running: {m} minutes.", "Sure, a timer for {m} minutes is on.",
    ],
    "chitchat_reply": [
        "Happy to help!", "That sounds lovely. Let me know when you're ready to carry on.",
        "I'm sure it'll turn out great.", "Glad to hear it! Cooking is more fun with company.",
        "Ha, I know the feeling. Shall we keep going?",
    ],
    "acknowledge_deny": [
        "No problem. What would you like to do instead?", "Okay, no worries.",
        "Sure, let me know what you'd prefer.", "Alright. Just tell me what you need.", "Got it, scratch that.",
    ],
    "farewell": [
        "Enjoy your meal! Goodbye.", "Happy cooking, bye!", "You're welcome. See you next time!",
        "Bye! Come back anytime you need a recipe.", "Glad I could help. Enjoy!",
    ],
}

# the "step" act is phrased according to how the user got there
_STEP_TEMPLATES = {
    "start_cooking": [
        "Let's begin. Step 1: {text}", "Step 1: {text}", "Okay, first up. Step 1 of {n_steps}: {text}",
        "Here we go! Step 1: {text}", "Great, let's cook. Step 1: {text}",
    ],
    "next_step": [
        "Step {k}: {text}", "Next, step {k}: {text}", "Step {k} of {n_steps}: {text}", "Okay. Step {k}: {text}",
        "Moving on. Step {k}: {text}",
    ],
    "previous_step": [
        "Going back. Step {k}: {text}", "Sure, back to step {k}: {text}", "Step {k} again: {text}",
        "No problem. Step {k}: {text}", "Here's the previous one. Step {k}: {text}",
    ],
    "go_to_step": [
        "Jumping to step {k}: {text}", "Step {k}: {text}", "Sure. Step {k} of {n_steps}: {text}",
        "Okay, here's step {k}: {text}", "Going to step {k}. {text}",
    ],
    "repeat_step": [
        "Sure, once more. Step {k}: {text}", "Again, step {k}: {text}", "Step {k} was: {text}",
        "No worries. Step {k}: {text}", "Repeating step {k}: {text}",
    ],
}

# optional discourse fillers so that no intent is marked by its first word
_FILLERS = ("ok, ", "alright, ", "so ", "right, ", "great, ", "um, ", "okay so ")
_NO_FILLER = frozenset({"greeting"})

# --------------------------------------------------------------------------
# catalog helpers: queries and lexical search
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------


def _user_text(rng: random.Random, intent: str, template: str, **kw) -> str:
    text = template.format(**kw)
    if intent not in _NO_FILLER and rng.random() < 0.2 and not text.startswith(("ok", "hmm", "um")):
        text = rng.choice(_FILLERS) + text
    return text


def _page_text(items: list[dict]) -> str:
    return " ".join(f"{j}. {r['title']} ({r['minutes']} min)" for j, r in enumerate(items, 1))


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _render(recipe: dict, states: list[dict], index: CatalogRetriever, rng: random.Random) -> list[dict]:
    n_steps = len(recipe["steps"])
    fmt = {"title": recipe["title"], "minutes": recipe["minutes"], "n_steps": n_steps,
           "n_ing": len(recipe["ingredients"])}
    kind, query = rng.choice(_query_options(recipe))
    ranked = index.ranked(query, exclude=recipe["id"])
    # the gold recipe goes on the page from which it is selected (the last page shown)
    gold_page = sum(1 for s in states if s["intent"] == "more_results")
    gold_pos = rng.randrange(PAGE_SIZE)
    page = -1
    shown: list[dict] = []
    messages: list[dict] = []
    for s in states:
        intent, hint = s["intent"], s["slots_hint"]
        slots: dict = {}
        ann: dict = {"act": s["act"]}
        if intent == "search_recipe" or intent == "more_results":
            page += 1
            shown = ranked[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
            if page == gold_page:
                shown = shown[:gold_pos] + [recipe] + shown[gold_pos:]
                shown = shown[:PAGE_SIZE]
            ann["shown"] = [r["id"] for r in shown]
            if intent == "search_recipe":
                slots = {"query": query}
                tmpl = rng.choice(_USER["search_recipe"] + _SEARCH_BY_KIND[kind])
                user = _user_text(rng, intent, tmpl, q=query)
            else:
                user = _user_text(rng, intent, rng.choice(_USER[intent]))
            system = rng.choice(_SYSTEM[s["act"]]).format(list=_page_text(shown), q=query)
        elif intent == "select_recipe":
            idx = next((j for j, r in enumerate(shown, 1) if r["id"] == recipe["id"]), 1)
            slots = {"index": idx}
            user = _user_text(rng, intent, rng.choice(_USER[intent]), i=idx)
            ann["recipe_id"] = recipe["id"]
            system = rng.choice(_SYSTEM["confirm_selection"]).format(**fmt)
        elif intent == "show_ingredients":
            user = _user_text(rng, intent, rng.choice(_USER[intent]))
            system = rng.choice(_SYSTEM["ingredients"]).format(ings="; ".join(recipe["ingredients"]), **fmt)
        elif intent == "start_cooking" or intent in STEP_INTENTS:
            if intent == "go_to_step":
                slots = {"step": hint["step"]}
                user = _user_text(rng, intent, rng.choice(_USER[intent]), k=hint["step"])
            else:
                user = _user_text(rng, intent, rng.choice(_USER[intent]))
            if s["act"] == "no_more_steps":
                system = rng.choice(_SYSTEM["no_more_steps"]).format(**fmt)
            else:
                k = s["step"]
                ann["step"] = k
                system = rng.choice(_STEP_TEMPLATES[intent]).format(
                    k=k, text=recipe["steps"][k - 1], **fmt)
        elif intent == "set_timer":
            minutes = hint.get("minutes", 10)
            if s["step"] >= 1 and rng.random() < 0.7:
                m = _TIMER_RE.search(recipe["steps"][s["step"] - 1])
                if m and int(m.group(1)) > 1:
                    minutes = int(m.group(1))
            slots = {"minutes": minutes}
            user = _user_text(rng, intent, rng.choice(_USER[intent]), m=minutes)
            system = rng.choice(_SYSTEM["timer_set"]).format(m=minutes)
        elif intent == "ask_question":
            qkind, utmpl, atmpl = rng.choice(_QUESTIONS)
            topic = ""
            if qkind == "substitute":
                topic = ingredient_name(rng.choice(recipe["ingredients"][1:] or recipe["ingredients"]))
                slots = {"topic": topic}
                ann["topic"] = topic
            ann["question"] = qkind
            user = _user_text(rng, intent, rng.choice(utmpl), t=topic)
            system = rng.choice(atmpl).format(t=topic, **fmt)
        else:  # greeting, chitchat, deny, goodbye
            user = _user_text(rng, intent, rng.choice(_USER[intent]))
            system = rng.choice(_SYSTEM[s["act"]]).format(**fmt)
        messages.append({"role": "user", "content": user,
                         "annotations": {"intent": intent, "slots": slots}})
        messages.append({"role": "assistant", "content": system, "annotations": ann})
    return messages


def generate_dialogues(catalog: list[dict], graph: dict, n: int, seed: int, max_turns: int,
                       source: str = "recipe_tod", use_graph: bool = True,
                       keep_graph=None) -> list[dict]:
    """Generate ``n`` canonical dialogue records.

    Deterministic for a seed; dialogue ``i`` only depends on ``(seed, i)``, so a
    smaller ``n`` yields a prefix of a larger run.  ``use_graph=False`` is the
    no-graph ablation (intents drawn uniformly among the admissible ones); `keep_graph(group)`
    true keeps the graph for that dialogue even then (the held-out ones: both arms of the
    ablation are scored on the same graph-generated test set).
    """
    if not catalog:
        raise ValueError("empty catalog")
    index = CatalogRetriever(catalog, recipe_text)
    recipes = index.items  # sorted by id: independent of catalog order
    out = []
    for i in range(n):
        rng = random.Random(f"{source}:{seed}:{i}")
        recipe = rng.choice(recipes)
        guided = use_graph or bool(keep_graph and keep_graph(f"{source}-{i}"))
        states = walk(graph if guided else None, rng, max_turns, len(recipe["steps"]))
        messages = _render(recipe, states, index, rng)
        digest = hashlib.sha1(_canonical(messages).encode("utf-8")).hexdigest()[:16]
        out.append({
            "id": digest,
            "source": source,
            "domain": "recipe",
            "group": f"{source}-{i}",
            "messages": messages,
            "meta": {
                "recipe_id": recipe["id"],
                "walk": [s["intent"] for s in states],
                "generator": "template",
                "use_graph": guided,
            },
        })
    return out
