"""The e-commerce domain of the graph-guided task-oriented dialogues (SynTOD).

Same method as the recipe domain (recipe.py), on the engine of engine.py: a seeded random walk over
the state graph data/seeds/graphs/ecommerce.json picks the user intents, and each turn is rendered
from paraphrase templates with values from the product catalog (data/seeds/products.json). The
e-commerce walk rules:
- one search per conversation (forced at the third turn); right after it, and after each answer,
  the system may ask a clarifying question about an attribute the user has not given yet, each
  answered by an `answer_clarification` turn. There are three such attributes, colour, budget and
  brand (no category-specific one), and a user may give one of them in the search itself, so the
  generator asks at most CLARIFY_PER_DIALOGUE = 2 (shop_walk's own cap, MAX_CLARIFY, is 3);
- at most MAX_MORE_RESULTS "more results" pages; the gold product goes on the page the user
  picks from, at a random position;
- cart and compare counters: at most MAX_CART adds and MAX_COMPARE comparisons; remove, show
  cart and checkout only with a non-empty cart; after checkout only goodbye, chitchat or questions;
- the common intents (ask_question, chitchat, deny) may follow any turn with a small weight.

Search results come from BM25 retrieval over the catalog (synthtune.text.retrieval) with the query and
the attributes given so far, restricted to the gold product's category; a budget puts the products
within it first.
"""
from __future__ import annotations

import math
import random

from synthtune.generate.dialogue.engine import PAGE_SIZE, Domain, Pager, register_domain, user_text
from synthtune.generate.dialogue.ecommerce_templates import CLARIFY, STORE_QUESTIONS, SYSTEM, USER
from synthtune.generate.dialogue.graph import choose_next

SHOP_INTENTS: tuple[str, ...] = tuple(sorted((
    "greeting", "search_product", "answer_clarification", "more_results", "select_product",
    "ask_product_question", "compare_products", "add_to_cart", "remove_from_cart", "show_cart",
    "checkout", "ask_question", "chitchat", "deny", "goodbye",
)))
PRODUCT_FIELDS = ("id", "title", "category", "price", "attributes")

MAX_MORE_RESULTS = 2
MAX_CLARIFY = 3         # the most clarifying questions shop_walk allows
# what the generator allows: three attributes, one may come with the search (with 3, _render would
# run out of attributes to ask about and fail)
CLARIFY_PER_DIALOGUE = 2
MAX_CART = 3
MAX_COMPARE = 2
MAX_COMMON = 2          # chitchat + deny turns per dialogue
_NO_REPEAT = frozenset({"ask_question", "chitchat", "deny", "ask_product_question", "show_cart"})


def product_text(product: dict) -> str:
    """What search matches a product on: title, category and every attribute value."""
    values = " ".join(str(v) for v in product["attributes"].values())
    return f"{product['title']} {product['category']} {values}"


# ------------------------------------------------------------------------------------ the walk


class _ShopState:
    __slots__ = ("turn", "searched", "selected", "n_more", "n_clarify", "cart", "n_cart", "n_compare",
                 "n_common", "prev", "checked_out")

    def __init__(self):
        self.turn = self.n_more = self.n_clarify = self.cart = self.n_cart = self.n_compare = 0
        self.n_common = 0
        self.searched = self.selected = self.checked_out = False
        self.prev = None


def _allowed(intent: str, st: _ShopState, max_clarify: int) -> bool:
    if intent in _NO_REPEAT and intent == st.prev:
        return False
    if intent in ("chitchat", "deny") and st.n_common >= MAX_COMMON:
        return False
    if st.checked_out:
        return intent in ("goodbye", "chitchat", "ask_question")
    return {
        "greeting": st.turn == 0,
        "search_product": not st.searched,
        # only right after the search (or an answer) can the system have asked a question
        "answer_clarification": st.prev in ("search_product", "answer_clarification") and st.n_clarify < max_clarify,
        "more_results": st.searched and not st.selected and st.n_more < MAX_MORE_RESULTS,
        "select_product": st.searched and not st.selected,
        "compare_products": st.searched and st.n_compare < MAX_COMPARE,
        "ask_product_question": st.selected,
        "add_to_cart": st.selected and st.n_cart < MAX_CART,
        "remove_from_cart": st.cart > 0,
        "show_cart": st.cart > 0,
        "checkout": st.cart > 0,
        "ask_question": st.turn > 0,
        "chitchat": st.turn > 0,
        "deny": st.searched,
        "goodbye": st.searched,
    }[intent]


_ACT = {"greeting": "greet", "search_product": "show_results", "answer_clarification": "show_results",
        "more_results": "show_more", "select_product": "product_details", "ask_product_question": "answer_product",
        "compare_products": "comparison", "add_to_cart": "added_to_cart", "remove_from_cart": "removed_from_cart",
        "show_cart": "cart_contents", "checkout": "order_placed", "ask_question": "answer",
        "chitchat": "chitchat_reply", "deny": "acknowledge_deny", "goodbye": "farewell"}


def shop_walk(graph: dict | None, rng: random.Random, max_turns: int, max_clarify: int = MAX_CLARIFY) -> list[dict]:
    """Random walk over the e-commerce graph: the user turns of one dialogue.

    Each element is {"intent", "act"} with the system act that answers it. When the walk goes
    to `answer_clarification`, the previous system act becomes `ask_clarification` (the
    system asked before showing results). `graph=None` is the no-graph ablation.
    """
    st = _ShopState()
    out: list[dict] = []
    max_clarify = min(MAX_CLARIFY, max_clarify)
    while st.turn < max_turns:
        if not st.searched and st.turn >= 2:
            intent = "search_product"  # one search per dialogue, and not too late
        else:
            allowed = [i for i in SHOP_INTENTS if _allowed(i, st, max_clarify)]
            intent = choose_next(graph, st.prev, allowed, rng)
        if intent == "answer_clarification":
            out[-1]["act"] = "ask_clarification"
            st.n_clarify += 1
        st.searched |= intent == "search_product"
        st.selected |= intent == "select_product"
        st.checked_out |= intent == "checkout"
        st.n_more += intent == "more_results"
        st.n_compare += intent == "compare_products"
        st.n_cart += intent == "add_to_cart"
        st.cart += (intent == "add_to_cart") - (intent == "remove_from_cart")
        st.n_common += intent in ("chitchat", "deny")
        out.append({"intent": intent, "act": _ACT[intent]})
        st.turn += 1
        st.prev = intent
        if intent == "goodbye":
            break
    return out


# ------------------------------------------------------------------------------------ rendering


def _page(items: list[dict]) -> str:
    return " ".join(f"{j}. {p['title']} ({p['attributes']['color']}, ${p['price']})"
                    for j, p in enumerate(items, 1))


def _details(product: dict) -> str:
    skip = {"brand", "color"}
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in product["attributes"].items() if k not in skip)


def _budget(price: float) -> int:
    return int(math.ceil((price + 0.01) / 50.0) * 50)


def _render(product: dict, states: list[dict], index, rng: random.Random) -> list[dict]:
    query = product["category"]
    # attributes the user can give or be asked about, in a random order
    facts = [("color", product["attributes"]["color"]), ("max_price", _budget(product["price"])),
             ("brand", product["attributes"]["brand"])]
    rng.shuffle(facts)
    given: dict = {}
    pager = Pager(product, states, rng, PAGE_SIZE)
    page, ranked, shown, messages = -1, [], [], []
    selected_at = 1
    quantity = 0
    for s in states:
        intent, act = s["intent"], s["act"]
        slots: dict = {}
        ann: dict = {"act": act}
        fmt = {"title": product["title"], "price": product["price"], "rating": product.get("rating", "")}
        if intent == "search_product":
            slots = {"query": query}
            style = rng.random()
            if style < 0.3:
                name, value = facts.pop()
                given[name] = value
                key = "search_with_budget" if name == "max_price" else "search_with_attr"
                user = user_text(rng, intent, rng.choice(USER[key]), q=query, a=value, p=value)
                slots[name] = value
            else:
                user = user_text(rng, intent, rng.choice(USER[intent]), q=query)
        elif intent == "answer_clarification":
            name, value = pending
            given[name] = value
            slots = {name: value}
            user = user_text(rng, intent, rng.choice(CLARIFY[name][1]), v=value)
        elif intent == "select_product":
            selected_at = next((j for j, p in enumerate(shown, 1) if p["id"] == product["id"]), 1)
            slots = {"index": selected_at}
            user = user_text(rng, intent, rng.choice(USER[intent]), i=selected_at)
            ann["product_id"] = product["id"]
        elif intent == "compare_products":
            i, j = sorted(rng.sample(range(1, len(shown) + 1), 2)) if len(shown) > 1 else (1, 1)
            slots = {"indices": [i, j]}
            user = user_text(rng, intent, rng.choice(USER[intent]), i=i, j=j)
            a, b = shown[i - 1], shown[j - 1]
            fmt.update(a=a["title"], b=b["title"], pa=a["price"], pb=b["price"],
                       ra=a.get("rating", ""), rb=b.get("rating", ""))
        elif intent == "add_to_cart":
            n = rng.choice((1, 1, 1, 2, 3))
            quantity += n
            tmpl = rng.choice(USER[intent])
            if "{n}" in tmpl:
                slots = {"quantity": n}
            else:
                n = 1
            user = user_text(rng, intent, tmpl, n=n)
            fmt["n"] = n
        elif intent == "ask_question":
            topic = rng.choice(sorted(STORE_QUESTIONS))
            slots = {"topic": topic}
            user = user_text(rng, intent, rng.choice(STORE_QUESTIONS[topic][0]))
            fmt["answer"] = rng.choice(STORE_QUESTIONS[topic][1])
        elif intent == "ask_product_question":
            attr = rng.choice(sorted(product["attributes"]))
            label = attr.replace("_", " ")
            slots = {"attribute": label}
            user = user_text(rng, intent, rng.choice([
                "what's the {a}?", "what {a} does it have?", "tell me the {a}", "can you check the {a}?",
                "how about the {a}?"]), a=label)
            fmt.update(attr=label, value=product["attributes"][attr])
        else:
            user = user_text(rng, intent, rng.choice(USER[intent]))
            fmt["n"] = max(quantity, 1)

        if act in ("show_results", "show_more"):
            if act == "show_results":
                words = " ".join([query] + [str(v) for k, v in given.items() if k != "max_price"])
                same_category = [p for p in index.ranked(words, exclude=product["id"]) if p["category"] == query]
                # within budget first; the rest of the category keeps later pages filled
                budget = given.get("max_price", math.inf)
                ranked = ([p for p in same_category if p["price"] <= budget]
                          + [p for p in same_category if p["price"] > budget])
                page = -1
            page += 1
            shown = pager.page(ranked, page)
            ann["shown"] = [p["id"] for p in shown]
            system = rng.choice(SYSTEM[act]).format(list=_page(shown))
        elif act == "ask_clarification":
            pending = facts.pop()
            ann["asked"] = pending[0]
            system = rng.choice(CLARIFY[pending[0]][0])
        elif act == "answer":
            system = fmt["answer"]
        elif act == "product_details":
            system = rng.choice(SYSTEM[act]).format(details=_details(product), **fmt)
        else:
            system = rng.choice(SYSTEM[act]).format(**fmt)
        messages.append({"role": "user", "content": user, "annotations": {"intent": intent, "slots": slots}})
        messages.append({"role": "assistant", "content": system, "annotations": ann})
    return messages


# ------------------------------------------------------------------------------------ the domain


class EcommerceDomain(Domain):
    """Find a product (with clarifying questions), compare, ask about it, fill a cart, check out."""

    name = "ecommerce"
    intents = SHOP_INTENTS
    catalog_fields = PRODUCT_FIELDS
    item_kind = "product"
    default_source = "shop_tod"
    user_instructions = {
        **Domain.user_instructions,
        "search_product": "asks to find products matching the query",
        "select_product": "picks one of the shown products by its number",
        "answer_clarification": "answers the assistant's clarifying question with the given value",
        "compare_products": "asks to compare the two shown products by their numbers",
        "ask_product_question": "asks about the given attribute of the chosen product",
        "add_to_cart": "asks to add the chosen product to the cart",
        "remove_from_cart": "asks to remove the item from the cart",
        "show_cart": "asks what is in the cart",
        "checkout": "asks to place the order",
    }
    fact_acts = Domain.fact_acts | {"product_details", "comparison", "cart_contents", "answer_product"}

    def item_text(self, item: dict) -> str:
        return product_text(item)

    def walk_for(self, graph, item, rng, max_turns):
        return shop_walk(graph, rng, max_turns, max_clarify=CLARIFY_PER_DIALOGUE)

    def render(self, item, states, index, rng):
        return _render(item, states, index, rng)


ECOMMERCE = register_domain(EcommerceDomain())
