"""The state annotation of a dialogue turn: one JSON line that starts the assistant message.

A dialogue turn is trained as the user's utterance, then an assistant message whose first line is
the state annotation of that user turn (intent and slots) and whose rest is the system reply.
`to_chat` builds that layout from a canonical record; `parse_annotation` reads it back from a
generation (what the scorecard scores).
"""
from __future__ import annotations

import json

# The SynTOD rendering's assistant speaker tag: a SynTOD completion is `{state}\n### ASSISTANT: reply`,
# and parse_annotation drops the tag so both layouts parse the same.
SYNTOD_ASSISTANT = "### ASSISTANT:"


def annotation_line(annotations: dict) -> str:
    """`{"intent": ..., "slots": {...}}` in that key order: the exact bytes the model learns to write."""
    return json.dumps({"intent": annotations.get("intent"), "slots": annotations.get("slots", {})},
                      ensure_ascii=False, sort_keys=False)


def parse_annotation(text: str) -> tuple[str | None, dict, str]:
    """Split a generated assistant message into (intent, slots, reply); intent None when unparseable.

    A SynTOD completion (`{state}\\n### ASSISTANT: reply`) parses the same: the speaker tag is dropped.
    """
    first, _, rest = text.partition("\n")
    rest = rest.strip()
    if rest.startswith(SYNTOD_ASSISTANT):
        rest = rest[len(SYNTOD_ASSISTANT):]
    try:
        state = json.loads(first)
    except json.JSONDecodeError:
        return None, {}, text.strip()
    if not isinstance(state, dict) or not isinstance(state.get("intent"), str):
        return None, {}, rest.strip()
    slots = state.get("slots") if isinstance(state.get("slots"), dict) else {}
    return state["intent"], slots, rest.strip()


def to_chat(record: dict) -> dict:
    """Canonical record -> {"id", "source", "group", "messages", "gold"} with annotated assistant turns.

    `gold` lists the turns a model can be scored on: the index of the assistant message, the
    user turn's intent and slots, and the bare reply. Every other rendering starts from this.
    """
    messages, gold = [], []
    pending = None  # the annotations of the user turn the next assistant message answers
    for message in record["messages"]:
        role, content = message["role"], message["content"]
        annotations = message.get("annotations") or {}
        if role == "user":
            pending = annotations if "intent" in annotations else None
            messages.append({"role": "user", "content": content})
        elif role == "assistant" and pending is not None:
            gold.append({"index": len(messages), "intent": pending["intent"],
                         "slots": pending.get("slots", {}), "reply": content})
            messages.append({"role": "assistant", "content": annotation_line(pending) + "\n" + content})
            pending = None
        else:
            messages.append({"role": role, "content": content})
    return {"id": record["id"], "source": record["source"], "group": record["group"],
            "messages": messages, "gold": gold}
