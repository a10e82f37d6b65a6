"""Graph-guided synthetic task-oriented dialogues for the e-commerce domain.

Same method as the recipe domain (synthtune.generate.dialogue.recipe): a seeded random walk over the state graph
data/seeds/graphs/ecommerce.json picks the user intents, and each turn is rendered from
paraphrase templates with values from the product catalog. The e-commerce walk rules:
- one search per conversation; after it (and after each answer) the system may ask up to
  MAX_CLARIFY clarifying questions about attributes the user did not give (colour, budget,
  brand, a category-specific one), each answered by an `answer_clarification` turn;
- at most MAX_MORE_RESULTS "more results" pages; the gold product goes on the page the user
  picks from, at a random position;
- cart and compare counters: at most MAX_CART adds and MAX_COMPARE comparisons; remove, show
  cart and checkout only with a non-empty cart;
- the common intents (ask_question, chitchat, deny) may follow any turn with a small weight.

Search results come from BM25 retrieval over the catalog (synthtune.text.retrieval) with the query and
the attributes given so far; a budget filters by price.
"""
from __future__ import annotations

import hashlib
import math
import random

from synthtune.generate.dialogue.recipe import _canonical, _user_text, choose_next, read_catalog
from synthtune.text.retrieval import CatalogRetriever

SHOP_INTENTS: tuple[str, ...] = tuple(sorted((
    "greeting", "search_product", "answer_clarification", "more_results", "select_product",
    "ask_product_question", "compare_products", "add_to_cart", "remove_from_cart", "show_cart",
    "checkout", "ask_question", "chitchat", "deny", "goodbye",
)))
PRODUCT_FIELDS = ("id", "title", "category", "price", "attributes")

PAGE_SIZE = 3
MAX_MORE_RESULTS = 2
MAX_CLARIFY = 3
MAX_CART = 3
MAX_COMPARE = 2
MAX_COMMON = 2          # chitchat + deny turns per dialogue
_NO_REPEAT = frozenset({"ask_question", "chitchat", "deny", "ask_product_question", "show_cart"})


def load_products(path) -> list[dict]:
    """Load and check the product catalog (a JSON list of products)."""
    return read_catalog(path, PRODUCT_FIELDS, "product")


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


# ------------------------------------------------------------------------------------ templates

_USER = {
    "greeting": ["hi", "hello there", "hey, can you help me find something?", "good morning!",
                 "hi, I'm shopping for a gift", "hello, I need to buy something"],
    "search_product": ["I'm looking for {q}", "do you sell {q}?", "can you find me {q}", "show me some {q}",
                       "I need new {q}", "what {q} do you have?", "I want to buy {q}"],
    "search_with_attr": ["I'm looking for {a} {q}", "do you have {a} {q}?", "show me {a} {q}",
                         "I need {a} {q}", "find me {a} {q} please"],
    "search_with_budget": ["I need {q} under {p} dollars", "any {q} for less than ${p}?",
                           "show me {q} below {p} dollars", "looking for {q}, my budget is {p} dollars",
                           "what {q} do you have under ${p}?"],
    "more_results": ["show me more", "any other options?", "what else do you have?", "next page please",
                     "none of these, more please", "can I see a few more?", "more results"],
    "select_product": ["I'll take number {i}", "let's go with {i}", "number {i} looks good", "option {i} please",
                       "tell me more about {i}", "can I see #{i}?", "I like number {i}"],
    "compare_products": ["compare {i} and {j}", "what's the difference between {i} and {j}?",
                         "how do {i} and {j} compare?", "{i} or {j}, which is better?",
                         "can you put {i} and {j} side by side?"],
    "add_to_cart": ["add it to my cart", "put {n} in the cart", "I'll buy {n}", "add {n} to the basket please",
                    "yes, add {n} of those to my cart", "get me {n} please"],
    "remove_from_cart": ["remove it from the cart", "take that out of my cart", "actually, delete it from the basket",
                         "remove the last item", "I changed my mind, remove it"],
    "show_cart": ["what's in my cart?", "show me my basket", "can I see the cart?", "what have I added so far?",
                  "cart please"],
    "checkout": ["let's check out", "I'm ready to pay", "place the order", "checkout please",
                 "ok, buy everything in the cart"],
    "chitchat": ["you're very helpful", "shopping is so tiring", "I always take ages to decide",
                 "this is for my brother's birthday", "thanks for your patience", "I love browsing online"],
    "deny": ["no, not that", "hmm, none of those", "nope", "I don't mind", "not really", "no thanks"],
    "goodbye": ["thanks, bye!", "that's all, goodbye", "ok I'm done, thank you", "see you later",
                "great, that's everything. bye"],
}

# clarifying question per attribute: (system questions, user answers); {v} is the value
_CLARIFY = {
    "color": (["Any colour in mind?", "Which colour would you like?", "Do you have a colour preference?",
               "What colour are you after?", "Is there a colour you prefer?"],
              ["{v} please", "I'd like {v}", "{v} would be great", "something in {v}", "{v}, ideally"]),
    "max_price": (["What's your budget?", "How much would you like to spend?", "Do you have a price limit?",
                   "What price range works for you?", "Is there a maximum price?"],
                  ["under {v} dollars", "no more than ${v}", "less than {v} dollars", "up to {v} dollars",
                   "my budget is {v} dollars"]),
    "brand": (["Any favourite brand?", "Do you prefer a brand?", "Which brand do you like?",
               "Is there a brand you trust?", "Any brand preference?"],
              ["{v} if possible", "I like {v}", "{v} please", "let's stick with {v}", "{v}, I think"]),
}

_SYSTEM = {
    "greet": ["Hi! What are you shopping for today?", "Hello! How can I help you shop?",
              "Hey there! Looking for anything in particular?", "Welcome! What can I find for you?",
              "Hi, I'm your shopping assistant. What do you need?"],
    "show_results": ["Here are some options: {list}", "I found these: {list}. Which one do you like?",
                     "How about one of these? {list}", "These match your search: {list}",
                     "Here's what we have: {list}. Pick a number to see more."],
    "show_more": ["Here are a few more: {list}", "Some other options: {list}", "More results: {list}",
                  "Okay, next page: {list}", "How about these instead? {list}"],
    "product_details": ["{title}: {details}. It costs ${price}.", "Here it is: {title}, ${price}. {details}.",
                        "{title} ({details}) is ${price}. Want me to add it to your cart?",
                        "Good pick: {title} for ${price}. {details}.",
                        "{title}, rated {rating} out of 5, ${price}. {details}."],
    "answer_product": ["Its {attr} is {value}.", "The {attr}: {value}.", "It has {value} for {attr}.",
                       "{title} comes with {attr} {value}.", "Good question: {attr} is {value}."],
    "comparison": ["{a} is ${pa} and {b} is ${pb}.", "{a} costs ${pa}; {b} costs ${pb}.",
                   "Side by side: {a} (${pa}) versus {b} (${pb}).",
                   "{a} is rated {ra}, {b} is rated {rb}.",
                   "Price: {a} ${pa}, {b} ${pb}. Ratings {ra} and {rb}."],
    "added_to_cart": ["Added {n} x {title} to your cart.", "Done, {n} in your cart.", "Your cart now has {n} x {title}.",
                      "Okay, {title} is in the basket.", "Great, added to your cart."],
    "removed_from_cart": ["Removed it from your cart.", "Okay, it's out of the basket.", "Done, I removed it.",
                          "That item is gone from your cart.", "Removed."],
    "cart_contents": ["Your cart has {n} item(s): {title}.", "In your basket: {title}.", "You have {title} in your cart.",
                      "Cart: {title}, {n} in total.", "So far you have {n} x {title}."],
    "order_placed": ["Your order is placed! It should arrive in 3 to 5 days.", "Order confirmed. Thank you!",
                     "All done, your order is on its way.", "Payment received, the order is placed.",
                     "Thanks! Your order has been placed."],
    "chitchat_reply": ["Happy to help!", "Take your time.", "I'm sure they'll love it.", "No rush at all.",
                       "Glad to hear it!"],
    "acknowledge_deny": ["No problem. What would you like instead?", "Okay, no worries.", "Sure, tell me what you prefer.",
                         "Alright.", "Got it."],
    "farewell": ["Thanks for shopping with us. Bye!", "Goodbye!", "Have a great day!", "Bye, come back soon!",
                 "Glad I could help. Bye!"],
}


# store questions (ask_question): topic -> (user questions, answers)
_STORE_QUESTIONS = {
    "shipping": (["how long does shipping take?", "when will it arrive?", "how fast is delivery?",
                  "do you ship abroad?", "what does shipping cost?"],
                 ["Shipping takes 3 to 5 working days.", "Delivery is 3 to 5 working days, free over $50.",
                  "We ship to most countries in 3 to 5 working days."]),
    "returns": (["what's your return policy?", "can I return it if it doesn't fit?", "how do returns work?",
                 "can I send it back?", "are returns free?"],
                ["You can return anything within 30 days.", "Returns are free within 30 days.",
                 "Send it back within 30 days for a full refund."]),
    "payment": (["can I pay with a gift card?", "do you take credit cards?", "can I pay later?",
                 "which payment methods do you accept?", "is PayPal ok?"],
                ["We accept cards, PayPal and gift cards.", "Cards, PayPal and gift cards all work at checkout.",
                 "You can pay by card, PayPal or gift card."]),
    "warranty": (["is there a warranty?", "what if it breaks?", "how long is the guarantee?",
                  "does it come with a warranty?", "what happens if it's faulty?"],
                 ["Every product has a one year warranty.", "It's covered by a one year warranty.",
                  "Faulty items are replaced within the one year warranty."]),
}


def _page(items: list[dict]) -> str:
    return " ".join(f"{j}. {p['title']} ({p['attributes']['color']}, ${p['price']})"
                    for j, p in enumerate(items, 1))


def _details(product: dict) -> str:
    skip = {"brand", "color"}
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in product["attributes"].items() if k not in skip)


def _budget(price: float) -> int:
    return int(math.ceil((price + 0.01) / 50.0) * 50)


# ------------------------------------------------------------------------------------ rendering


def _render(product: dict, states: list[dict], index: CatalogRetriever, rng: random.Random) -> list[dict]:
    query = product["category"]
    # attributes the user can give or be asked about, in a random order
    facts = [("color", product["attributes"]["color"]), ("max_price", _budget(product["price"])),
             ("brand", product["attributes"]["brand"])]
    rng.shuffle(facts)
    given: dict = {}
    gold_page = sum(1 for s in states if s["intent"] == "more_results")
    gold_pos = rng.randrange(PAGE_SIZE)
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
                user = _user_text(rng, intent, rng.choice(_USER[key]), q=query, a=value, p=value)
                slots[name] = value
            else:
                user = _user_text(rng, intent, rng.choice(_USER[intent]), q=query)
        elif intent == "answer_clarification":
            name, value = pending
            given[name] = value
            slots = {name: value}
            user = _user_text(rng, intent, rng.choice(_CLARIFY[name][1]), v=value)
        elif intent == "select_product":
            selected_at = next((j for j, p in enumerate(shown, 1) if p["id"] == product["id"]), 1)
            slots = {"index": selected_at}
            user = _user_text(rng, intent, rng.choice(_USER[intent]), i=selected_at)
            ann["product_id"] = product["id"]
        elif intent == "compare_products":
            i, j = sorted(rng.sample(range(1, len(shown) + 1), 2)) if len(shown) > 1 else (1, 1)
            slots = {"indices": [i, j]}
            user = _user_text(rng, intent, rng.choice(_USER[intent]), i=i, j=j)
            a, b = shown[i - 1], shown[j - 1]
            fmt.update(a=a["title"], b=b["title"], pa=a["price"], pb=b["price"],
                       ra=a.get("rating", ""), rb=b.get("rating", ""))
        elif intent == "add_to_cart":
            n = rng.choice((1, 1, 1, 2, 3))
            quantity += n
            tmpl = rng.choice(_USER[intent])
            if "{n}" in tmpl:
                slots = {"quantity": n}
            else:
                n = 1
            user = _user_text(rng, intent, tmpl, n=n)
            fmt["n"] = n
        elif intent == "ask_question":
            topic = rng.choice(sorted(_STORE_QUESTIONS))
            slots = {"topic": topic}
            user = _user_text(rng, intent, rng.choice(_STORE_QUESTIONS[topic][0]))
            fmt["answer"] = rng.choice(_STORE_QUESTIONS[topic][1])
        elif intent == "ask_product_question":
            attr = rng.choice(sorted(product["attributes"]))
            label = attr.replace("_", " ")
            slots = {"attribute": label}
            user = _user_text(rng, intent, rng.choice([
                "what's the {a}?", "what {a} does it have?", "tell me the {a}", "can you check the {a}?",
                "how about the {a}?"]), a=label)
            fmt.update(attr=label, value=product["attributes"][attr])
        else:
            user = _user_text(rng, intent, rng.choice(_USER[intent]))
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
            shown = ranked[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
            if page == gold_page:
                shown = (shown[:gold_pos] + [product] + shown[gold_pos:])[:PAGE_SIZE]
            ann["shown"] = [p["id"] for p in shown]
            system = rng.choice(_SYSTEM[act]).format(list=_page(shown))
        elif act == "ask_clarification":
            pending = facts.pop()
            ann["asked"] = pending[0]
            system = rng.choice(_CLARIFY[pending[0]][0])
        elif act == "answer":
            system = fmt["answer"]
        elif act == "product_details":
            system = rng.choice(_SYSTEM[act]).format(details=_details(product), **fmt)
        else:
            system = rng.choice(_SYSTEM[act]).format(**fmt)
        messages.append({"role": "user", "content": user, "annotations": {"intent": intent, "slots": slots}})
        messages.append({"role": "assistant", "content": system, "annotations": ann})
    return messages


def generate_shop_dialogues(catalog: list[dict], graph: dict, n: int, seed: int, max_turns: int,
                            source: str = "shop_tod", use_graph: bool = True,
                            keep_graph=None) -> list[dict]:
    """`n` canonical e-commerce dialogue records; dialogue i depends only on (seed, i).
    `use_graph=False` is the ablation; `keep_graph(group)` true keeps the graph for that dialogue."""
    index = CatalogRetriever(catalog, product_text)
    products = index.items
    out = []
    for i in range(n):
        rng = random.Random(f"{source}:{seed}:{i}")
        product = rng.choice(products)
        guided = use_graph or bool(keep_graph and keep_graph(f"{source}-{i}"))
        states = shop_walk(graph if guided else None, rng, max_turns, max_clarify=2)
        messages = _render(product, states, index, rng)
        digest = hashlib.sha1(_canonical(messages).encode("utf-8")).hexdigest()[:16]
        out.append({
            "id": digest, "source": source, "domain": "ecommerce", "group": f"{source}-{i}",
            "messages": messages,
            "meta": {"product_id": product["id"], "walk": [s["intent"] for s in states],
                     "generator": "template", "use_graph": guided},
        })
    return out
