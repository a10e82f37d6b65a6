"""The tiny base model's corpus: what its tokenizer is trained on and what it is pretrained on."""
from __future__ import annotations

import random

from synthtune.model.formats.annotations import annotation_line, to_chat


def plain_text(record: dict) -> str:
    """The conversation without annotations, in the chat layout: the base model's pretraining text."""
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
    chats = [to_chat(r) for r in pool if r.get("messages")]
    tokenizer_texts = [m["content"] for chat in chats for m in chat["messages"]]
    states = [annotation_line(turn) for chat in chats for turn in chat["gold"]]
    random.Random(seed).shuffle(states)
    pretrain_texts = [plain_text(r) for r in pool if r.get("messages")] + ["\n".join(states) + "\n"]
    return tokenizer_texts, pretrain_texts
