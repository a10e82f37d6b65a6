"""The LLM simulator of the graph-guided dialogues: every turn of a walk voiced by the teacher.

The walk, the slots and the facts of every system turn come from the graph and the catalog
(synthtune.generate.dialogue.recipe, synthtune.generate.dialogue.ecommerce), exactly as for the offline `template` simulator. The teacher
then writes each turn in its own words, given the dialogue so far, the turn's intent (user) or
act (system), its slot values and its facts, with a per-intent instruction and temperature
(0 for turns that show facts: results, steps, product details; higher for small talk).

Every request is independent (the history it sees is the template history), so a dialogue's
turns go to the teacher as one batch and concurrency applies across the whole source. Answers
are JSON objects {"text": "..."}; the teacher layer repairs malformed JSON once. A turn whose
answer is still unusable, or whose text drops a slot value the user must say (a query, a
number), quarantines its dialogue with the reason; the other dialogues go on.
"""
from __future__ import annotations

import hashlib
import json

# what the user does in each intent (both domains); unknown intents get a generic line
USER_INSTRUCTIONS = {
    "greeting": "greets the assistant and opens the conversation",
    "search_recipe": "asks to search for recipes matching the query",
    "search_product": "asks to find products matching the query",
    "more_results": "asks to see more results than those shown",
    "select_recipe": "picks one of the shown results by its number",
    "select_product": "picks one of the shown products by its number",
    "show_ingredients": "asks for the ingredient list",
    "start_cooking": "says they are ready to start cooking",
    "next_step": "asks for the next step",
    "previous_step": "asks to go back one step",
    "go_to_step": "asks to jump to the given step number",
    "repeat_step": "asks to repeat the current step",
    "set_timer": "asks for a timer of the given minutes",
    "ask_question": "asks a question about the topic",
    "answer_clarification": "answers the assistant's clarifying question with the given value",
    "compare_products": "asks to compare the two shown products by their numbers",
    "ask_product_question": "asks about the given attribute of the chosen product",
    "add_to_cart": "asks to add the chosen product to the cart",
    "remove_from_cart": "asks to remove the item from the cart",
    "show_cart": "asks what is in the cart",
    "checkout": "asks to place the order",
    "chitchat": "makes small talk unrelated to the task",
    "deny": "declines or rejects what was offered",
    "goodbye": "ends the conversation",
}
FACT_ACTS = frozenset({"show_results", "show_more", "step", "ingredients", "product_details", "comparison",
                       "no_more_steps", "cart_contents", "answer_product"})
CHATTY = frozenset({"greeting", "chitchat", "goodbye", "deny", "greet", "chitchat_reply", "farewell"})


def _history(messages: list[dict], upto: int) -> str:
    lines = [f"{m['role'].upper()}: {m['content']}" for m in messages[:upto]]
    return "\n".join(lines) if lines else "(the conversation starts here)"


def _verbatim_values(slots: dict, template_text: str) -> list[str]:
    """Slot values the template said word for word: the teacher's text must say them too."""
    values = []
    for value in slots.values():
        for item in value if isinstance(value, list) else [value]:
            if str(item).lower() in template_text.lower():
                values.append(str(item))
    return values


def turn_requests(record: dict, domain: str, request_cls) -> list:
    """One ChatRequest per turn of a template dialogue (user and system)."""
    requests = []
    messages = record["messages"]
    for i, message in enumerate(messages):
        ann = message.get("annotations") or {}
        if message["role"] == "user":
            intent = ann.get("intent", "")
            task = (f"Write the user's next message in a {domain} assistant conversation. The user "
                    f"{USER_INSTRUCTIONS.get(intent, 'continues the conversation')} (intent: {intent}).")
            if ann.get("slots"):
                task += f" Slot values it must contain word for word: {json.dumps(ann['slots'])}."
            temperature = 1.0 if intent in CHATTY else 0.7
        else:
            act = ann.get("act", "")
            task = (f"Write the assistant's next reply in a {domain} assistant conversation (act: {act}). "
                    f"Say the same facts as this draft, in your own words, keeping every name, number "
                    f"and list item: {message['content']!r}")
            temperature = 0.0 if act in FACT_ACTS else (0.9 if act in CHATTY else 0.5)
        prompt = (f"{task}\n\nConversation so far:\n{_history(messages, i)}\n\n"
                  'Answer with a JSON object {"text": "..."} and nothing else.')
        requests.append(request_cls(messages=[{"role": "user", "content": prompt}], temperature=temperature,
                                    max_tokens=200, json=True,
                                    meta={"template": message["content"], "record": record["id"], "turn": i}))
    return requests


def offline_answer(request) -> str:
    """The template simulator's answer to a turn request: its own text (template backend, dry runs)."""
    return json.dumps({"text": request.meta["template"]})


def _check(response, request, message: dict) -> str | None:
    if not response.ok:
        return response.error or "teacher answer unusable"
    data = response.data
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) or not data["text"].strip():
        return 'answer lacks a non-empty "text" string'
    if message["role"] == "user":
        slots = (message.get("annotations") or {}).get("slots") or {}
        missing = [v for v in _verbatim_values(slots, request.meta["template"]) if v.lower() not in data["text"].lower()]
        if missing:
            return f"user text drops slot value(s) {missing}"
    return None


def voice_dialogues(records: list[dict], domain: str, teacher, request_cls) -> tuple[list[dict], list[dict]]:
    """Template dialogues -> (teacher-voiced dialogues, rejects with reasons). Annotations are kept."""
    batches = [turn_requests(r, domain, request_cls) for r in records]
    flat = [req for batch in batches for req in batch]
    responses = iter(teacher.complete(flat, offline=offline_answer))
    voiced, rejects = [], []
    for record, batch in zip(records, batches):
        answers = [next(responses) for _ in batch]
        messages, problem = [], None
        for n, (message, request, response) in enumerate(zip(record["messages"], batch, answers)):
            why = _check(response, request, message)
            if why:
                problem = problem or f"teacher answer unusable: turn {n}: {why}"
                continue
            messages.append({**message, "content": response.data["text"].strip()})
        if problem:
            rejects.append({"source": record["source"], "group": record["group"], "reason": problem,
                            "record": record["id"]})
            continue
        blob = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        voiced.append({**record, "id": hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16], "messages": messages,
                       "meta": {**record["meta"], "generator": getattr(teacher, "backend", "teacher"),
                                "teacher_model": getattr(teacher, "model", None)}})
    return voiced, rejects
