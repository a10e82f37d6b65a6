"""The LLM simulator of the graph-guided dialogues: every turn of a walk voiced by the teacher.

The walk, the slots and the facts of every system turn come from the graph and the catalog
(the domains of DOMAINS: recipe.py, ecommerce.py, ...), exactly as for the offline `template`
simulator. The teacher then writes each turn in its own words, given the dialogue so far, the
turn's intent (user) or act (system), its slot values and its facts, with a per-intent
instruction and temperature (0 for turns that show facts: results, steps, product details;
higher for small talk). The instructions and the fact and chatty acts are the domain's
(`Domain.user_instructions`, `.fact_acts`, `.chatty`); a domain name that is not registered gets
the engine's generic ones.

Every request is independent (the history it sees is the template history), so a dialogue's
turns go to the teacher as one batch and concurrency applies across the whole source. Answers
are JSON objects {"text": "..."}; the teacher layer repairs malformed JSON once. A turn whose
answer is still unusable, or whose text drops a slot value the user must say (a query, a
number), quarantines its dialogue with the reason; the other dialogues go on.
"""
from __future__ import annotations

import json

from synthtune.generate.dialogue.engine import DOMAINS, Domain, record_id


def _domain(domain) -> Domain:
    """The registered domain of that name (or the domain itself); unknown names: the generic Domain."""
    if isinstance(domain, Domain):
        return domain
    return DOMAINS.get(domain) or Domain()


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


def turn_requests(record: dict, domain: str | Domain, request_cls) -> list:
    """One ChatRequest per turn of a template dialogue (user and system); `domain`: a name or a Domain."""
    spec = _domain(domain)
    domain = spec.name or domain
    requests = []
    messages = record["messages"]
    for i, message in enumerate(messages):
        ann = message.get("annotations") or {}
        if message["role"] == "user":
            intent = ann.get("intent", "")
            task = (f"Write the user's next message in a {domain} assistant conversation. The user "
                    f"{spec.user_instructions.get(intent, 'continues the conversation')} (intent: {intent}).")
            if ann.get("slots"):
                task += f" Slot values it must contain word for word: {json.dumps(ann['slots'])}."
            temperature = 1.0 if intent in spec.chatty else 0.7
        else:
            act = ann.get("act", "")
            task = (f"Write the assistant's next reply in a {domain} assistant conversation (act: {act}). "
                    f"Say the same facts as this draft, in your own words, keeping every name, number "
                    f"and list item: {message['content']!r}")
            temperature = 0.0 if act in spec.fact_acts else (0.9 if act in spec.chatty else 0.5)
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
            rejects.append({"source": record["source"], "group": record["group"], "code": "teacher_unusable",
                            "reason": problem, "record": record["id"]})
            continue
        voiced.append({**record, "id": record_id(messages), "messages": messages,
                       "meta": {**record["meta"], "generator": getattr(teacher, "backend", "teacher"),
                                "teacher_model": getattr(teacher, "model", None)}})
    return voiced, rejects
