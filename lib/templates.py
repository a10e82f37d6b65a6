"""Format: render canonical records into training conversations and teacher-forced prompts.

A dialogue turn is trained as: the user's utterance, then an assistant message whose first
line is the state annotation of that user turn (intent and slots, one JSON line) and whose
rest is the system reply. Prediction uses the very same rendering: the prompt for turn t is
the gold conversation up to user turn t with the generation prompt appended, which is a
token-identical prefix of the training sequence (tested).
"""
from __future__ import annotations

import json
from collections import Counter

from lib.config import FormatParams


def annotation_line(annotations: dict) -> str:
    return json.dumps({"intent": annotations.get("intent"), "slots": annotations.get("slots", {})},
                      ensure_ascii=False, sort_keys=False)


def parse_annotation(text: str) -> tuple[str | None, dict, str]:
    """Split a generated assistant message into (intent, slots, reply); intent None when unparseable."""
    first, _, rest = text.partition("\n")
    try:
        state = json.loads(first)
    except json.JSONDecodeError:
        return None, {}, text.strip()
    if not isinstance(state, dict) or not isinstance(state.get("intent"), str):
        return None, {}, rest.strip()
    slots = state.get("slots") if isinstance(state.get("slots"), dict) else {}
    return state["intent"], slots, rest.strip()


def to_chat(record: dict) -> dict:
    """Canonical record -> {"id", "source", "group", "messages", "gold"} with annotated assistant turns."""
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


def plain_text(record: dict) -> str:
    """The conversation without annotations, rendered like chat: the base model's pretraining text."""
    lines = []
    for message in record["messages"]:
        lines.append(f"<|{message['role']}|>\n{message['content']}<|end|>")
    return "\n".join(lines) + "\n"


def pretraining_corpus(pool: list[dict], seed: int) -> tuple[list[str], list[str]]:
    """Texts for the tiny base model: (tokenizer training texts, pretraining texts).

    The tokenizer sees the rendered training text, so intents and slots tokenize compactly.
    Pretraining sees the plain dialogues plus the annotation lines as a separate, shuffled
    document: the base model then knows every token and the JSON syntax (a tied LM head with
    never-trained rows is something LoRA cannot fix), but not which state follows which
    utterance, which is what fine-tuning must teach.
    """
    import random

    chats = [to_chat(r) for r in pool if r.get("messages")]
    tokenizer_texts = [m["content"] for chat in chats for m in chat["messages"]]
    states = [annotation_line(turn) for chat in chats for turn in chat["gold"]]
    random.Random(seed).shuffle(states)
    pretrain_texts = [plain_text(r) for r in pool if r.get("messages")] + ["\n".join(states) + "\n"]
    return tokenizer_texts, pretrain_texts


def prompt_messages(example: dict, turn: dict) -> list[dict]:
    """Teacher-forced prompt of a gold turn: the gold history up to (and including) its user message."""
    return example["messages"][: turn["index"]]


def token_length(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def fit_length(example: dict, tokenizer, params: FormatParams) -> dict | None:
    """Fit a conversation into max_length tokens: drop it, or keep the longest prefix of whole turns."""
    if token_length(tokenizer, example["messages"]) <= params.max_length:
        return example
    if params.overflow == "drop":
        return None
    ends = [g["index"] + 1 for g in example["gold"]] or [
        i + 1 for i, m in enumerate(example["messages"]) if m["role"] == "assistant"]
    for end in reversed(ends):
        messages = example["messages"][:end]
        if token_length(tokenizer, messages) <= params.max_length:
            gold = [g for g in example["gold"] if g["index"] < end]
            return {**example, "messages": messages, "gold": gold}
    return None


def format_split(records: list[dict], tokenizer, params: FormatParams) -> tuple[list[dict], dict]:
    """Render and length-fit one split; returns (examples, counts)."""
    out, counts, lengths = [], Counter(), []
    for record in records:
        if record.get("messages") is None:
            counts["skipped_text_records"] += 1   # raw-text rendering comes with the formatting issue
            continue
        if record.get("meta", {}).get("prompt_only"):
            counts["skipped_prompt_only"] += 1    # nothing to train on or score against
            continue
        example = to_chat(record)
        fitted = fit_length(example, tokenizer, params)
        if fitted is None:
            counts["dropped_too_long"] += 1
            continue
        if len(fitted["messages"]) < len(example["messages"]):
            counts["truncated"] += 1
        lengths.append(token_length(tokenizer, fitted["messages"]))
        out.append(fitted)
    counts["examples"] = len(out)
    counts["tokens"] = sum(lengths)
    counts["max_tokens"] = max(lengths, default=0)
    return out, dict(counts)
