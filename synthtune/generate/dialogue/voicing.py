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
are JSON objects {"text": "..."} under `TURN_SCHEMA` (sent as a json_schema response format, so
servers and the hf teacher constrain decoding to it); the teacher layer repairs malformed JSON once.

A weak model (a 135M one fails often) never costs a dialogue: a turn whose answer is unusable,
whose text drops a slot value the user must say (a query, a number), loops (a symbol four times
in a row, the same word four times: how small models degenerate), or, for a user turn, echoes
the assistant's previous reply (half its word 4-grams copied: a small model losing track of
whose turn it is), or reads as another intent than its label (`IntentCheck`: the voiced user text
is nearer, by `intent_margin` cosine or more, to a template wording of another intent of the
source than to any of its own: a "greeting" that asks for the cart would be trained as a greeting), is
asked again with the next sample index (at temperature at least REASK_TEMPERATURE: a greedy re-ask would repeat
itself), `reasks` times at most; then the turn keeps its template wording. The record says so:
`meta.voiced` (every turn voiced) and `meta.voicing` {turns, voiced, reasks, fallbacks: [{turn,
reason}]}. Labels stay exact either way: walks, slots and facts come from the graph and catalog.
"""
from __future__ import annotations

import json
import re

import numpy as np

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


TURN_SCHEMA = {"type": "object", "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 600}},
               "required": ["text"], "additionalProperties": False}
REASK_TEMPERATURE = 0.7


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
                                    max_tokens=200, json=True, schema=TURN_SCHEMA,
                                    meta={"template": message["content"], "record": record["id"], "turn": i}))
    return requests


def offline_answer(request) -> str:
    """The template simulator's answer to a turn request: its own text (template backend, dry runs)."""
    return json.dumps({"text": request.meta["template"]})


LOOP = re.compile(r"([^\w\s])\1{3,}|\b(\w+)(?:\W+\2\b){3,}", re.IGNORECASE)
ECHO_SHARE = 0.5


def _four_grams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + 4]) for i in range(len(words) - 3)}


def echoes(text: str, previous: str | None) -> bool:
    """A user text made of the previous reply: at least half of its (3 or more) word 4-grams are in it."""
    grams = _four_grams(text)
    return bool(previous) and len(grams) >= 3 and len(grams & _four_grams(previous)) >= ECHO_SHARE * len(grams)


def _check(response, request, message: dict, previous: str | None = None) -> str | None:
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
        if echoes(data["text"], previous):
            return "user text echoes the assistant's previous reply"
    loop = LOOP.search(data["text"])
    if loop:
        return f"text loops ({loop.group(0)[:24]!r})"
    return None


class IntentCheck:
    """Does a voiced user text still say its intent? Every user turn of the source's template
    dialogues is a wording of its intent (embedded by `embedder`); a text fails when its nearest
    wording of another intent is nearer than its nearest wording of its own by `margin` cosine or more.

    Measured on the default sources' 1,104 distinct template wordings (table in
    docs/architecture.md), each held out of the wordings it is compared with, plain and with fillers a model adds
    ("well, ...", "okay so ..., thanks"): at margin 0.15 the nearest wording flags 0-1.1% of genuine
    wordings and catches 97-99% of wordings claimed as another intent; the nearest intent centroid
    flags 0.2-1.3% and catches only 88.5-92% (fillers pull short texts toward chitchat's centroid)."""

    def __init__(self, records: list[dict], embedder: str, margin: float, key: str = "intent_check"):
        from synthtune.text.embeddings import embed_texts

        wordings: dict[str, str] = {}
        for record in records:
            for message in record["messages"]:
                intent = (message.get("annotations") or {}).get("intent")
                if message["role"] == "user" and intent:
                    wordings.setdefault(message["content"], intent)
        self.embedder, self.margin, self.key = embedder, margin, key
        self.intents = sorted(set(wordings.values()))
        texts = sorted(wordings)
        self.labels = np.array([self.intents.index(wordings[t]) for t in texts], dtype=np.int64)
        self.vectors = embed_texts(texts, embedder, dims=256, seed=0, key=key)[0] if texts \
            else np.zeros((0, 0), np.float32)

    def failures(self, texts: list[str], intents: list[str]) -> list[str | None]:
        """A reason for each text that reads as another intent, else None (unknown intents pass)."""
        from synthtune.text.embeddings import embed_texts

        if not texts or not self.intents:
            return [None] * len(texts)
        similarity = embed_texts(texts, self.embedder, dims=256, seed=0, key=self.key)[0] @ self.vectors.T
        nearest = np.stack([similarity[:, self.labels == j].max(axis=1) for j in range(len(self.intents))], axis=1)
        reasons = []
        for row, intent in zip(nearest, intents):
            own = self.intents.index(intent) if intent in self.intents else None
            best = int(np.argmax(row))
            if own is None or best == own or row[best] - row[own] < self.margin:
                reasons.append(None)
            else:
                reasons.append(f"user text reads as {self.intents[best]} ({row[best]:.2f}), "
                               f"not {intent} ({row[own]:.2f})")
        return reasons


def reask(request, attempt: int, request_cls):
    """The same turn request again, as draw `attempt` (a new cache key), sampled."""
    return request_cls(messages=request.messages, temperature=max(request.temperature or 0.0, REASK_TEMPERATURE),
                       max_tokens=request.max_tokens, json=True, schema=request.schema, sample=attempt,
                       meta=request.meta)


def voice_dialogues(records: list[dict], domain: str, teacher, request_cls, reasks: int = 2,
                    intent_check: str | None = None, intent_margin: float = 0.15,
                    intent_check_key: str = "intent_check") -> tuple[list[dict], list[dict]]:
    """Template dialogues -> (teacher-voiced dialogues, rejects). Annotations are kept; a turn the
    teacher cannot voice after `reasks` re-asks keeps its template text (see the module docstring),
    so every dialogue comes back and the rejects are empty. `intent_check`: the embedder of the
    IntentCheck (None: no intent check), `intent_check_key` its params key (named by its errors)."""
    check = IntentCheck(records, intent_check, intent_margin, intent_check_key) if intent_check else None
    batches = [turn_requests(r, domain, request_cls) for r in records]
    flat = [req for batch in batches for req in batch]
    messages = [m for r in records for m in r["messages"]]
    previous = [r["messages"][j - 1]["content"] if j else None for r in records for j in range(len(r["messages"]))]
    texts: list[str | None] = [None] * len(flat)
    why: list[str | None] = [None] * len(flat)
    asked = [0] * len(flat)
    todo = list(range(len(flat)))
    for attempt in range(reasks + 1):
        if not todo:
            break
        wave = [flat[i] if attempt == 0 else reask(flat[i], attempt, request_cls) for i in todo]
        for i, request, response in zip(todo, wave, teacher.complete(wave, offline=offline_answer)):
            asked[i] += attempt > 0
            why[i] = _check(response, request, messages[i], previous[i])
            if why[i] is None:
                texts[i] = response.data["text"].strip()
        if check is not None:                 # one embedding batch per wave
            users = [i for i in todo if texts[i] is not None and messages[i]["role"] == "user"]
            intents = [(messages[i].get("annotations") or {}).get("intent") for i in users]
            for i, reason in zip(users, check.failures([texts[i] for i in users], intents)):
                if reason:
                    why[i], texts[i] = reason, None
        todo = [i for i in todo if texts[i] is None]
    voiced, position = [], 0
    for record, batch in zip(records, batches):
        turns = range(position, position + len(batch))
        position += len(batch)
        fallbacks = [{"turn": i - turns.start, "reason": why[i]} for i in turns if texts[i] is None]
        out = [{**messages[i], "content": texts[i] if texts[i] is not None else messages[i]["content"]}
               for i in turns]
        voiced.append({**record, "id": record_id(out), "messages": out, "meta": {
            **record["meta"], "generator": getattr(teacher, "backend", "teacher"),
            "teacher_model": getattr(teacher, "model", None), "voiced": not fallbacks,
            "voicing": {"turns": len(batch), "voiced": len(batch) - len(fallbacks),
                        "reasks": sum(asked[i] for i in turns), "fallbacks": fallbacks}}})
    return voiced, []


def voicing_metrics(records: list[dict]) -> dict:
    """Per source: the share of turns the teacher voiced, re-asks, template fallbacks, fully voiced dialogues."""
    stats = [r["meta"]["voicing"] for r in records if "voicing" in r.get("meta", {})]
    if not stats:
        return {}
    turns = sum(s["turns"] for s in stats)
    return {"voiced_turn_rate": round(sum(s["voiced"] for s in stats) / max(1, turns), 4),
            "voicing_reasks": sum(s["reasks"] for s in stats),
            "voicing_fallbacks": sum(len(s["fallbacks"]) for s in stats),
            "voiced_dialogues": sum(not s["fallbacks"] for s in stats)}
