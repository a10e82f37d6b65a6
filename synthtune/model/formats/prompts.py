"""Teacher-forced prompts, shared by format and predict: what a gold turn's prompt is, in text and token ids.

Prediction generates from exactly the tokens training saw before the turn, so the helpers here
tokenize the way TRL's SFTTrainer does: chat rows through the tokenizer's chat template, every
other row with `tokenizer(text=...)`. The prompt of a gold turn is a token-identical prefix of
its training sequence (tests/model/test_formats.py checks it for every rendering).
"""
from __future__ import annotations


def prompt_messages(example: dict, turn: dict) -> list[dict]:
    """Teacher-forced prompt of a gold turn: the gold history up to (and including) its user message."""
    return example["messages"][: turn["index"]]


def token_length(tokenizer, messages: list[dict]) -> int:
    """Tokens of a conversation rendered by the tokenizer's chat template (what chat rows train on)."""
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a plain-text prompt or sequence exactly as TRL tokenizes it (`tokenizer(text=...)`)."""
    return tokenizer(text=text)["input_ids"]


def with_eos(text: str, tokenizer) -> str:
    """TRL appends the EOS token to a completion or text that lacks it; the rows hold it already."""
    eos = tokenizer.eos_token or ""
    return text if text.endswith(eos) else text + eos


def first_prompt_length(example: dict, tokenizer) -> int | None:
    """Tokens of a chat example's first prompt (everything before its first assistant turn); None: no turn."""
    first = next((i for i, m in enumerate(example["messages"]) if m["role"] == "assistant"), None)
    if first is None:
        return None
    return len(tokenizer.apply_chat_template(example["messages"][:first], add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"])


def prompt_text(example: dict, turn: dict, tokenizer) -> str:
    """The prompt string of one gold turn of a formatted row (any rendering)."""
    if "messages" in example:
        return tokenizer.apply_chat_template(prompt_messages(example, turn), add_generation_prompt=True,
                                             tokenize=False)
    if "prompt" in example:   # one row per gold turn: its prompt is the row's
        if all(g["index"] != turn["index"] for g in example["gold"]):
            raise ValueError(f"turn {turn['index']} is not the turn of row {example['id']}")
        return example["prompt"]
    return example["text"][: turn["prompt_chars"]]   # text rows: each gold turn marks where its prompt ends


def render_prompt(example: dict, turn: dict, tokenizer) -> list[int]:
    """Token ids of the prompt of one gold turn, exactly as training saw them (what predict generates from)."""
    if "messages" in example:
        return tokenizer.apply_chat_template(prompt_messages(example, turn), add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"]
    return text_ids(tokenizer, prompt_text(example, turn, tokenizer))
