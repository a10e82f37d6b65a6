"""Batched generation: chat prompts in, completions out, in the caller's order.

Prompts are rendered with the tokenizer's chat template (the same rendering the trainer
uses), sorted by length so each batch pads little, left-padded, and decoded greedily by
default. Batched greedy output equals one-prompt-at-a-time output (tested).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)


def render_prompts(tokenizer, conversations: Sequence[list[dict]]) -> list[list[int]]:
    return [tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"] for messages in conversations]


def generate(model, tokenizer, conversations: Sequence[list[dict]], *, batch_size: int = 32,
             max_new_tokens: int = 64, max_prompt_tokens: int | None = None) -> list[str]:
    """Greedy completions for chat prompts; prompts longer than max_prompt_tokens keep their end."""
    import torch
    from tqdm import tqdm

    prompts = render_prompts(tokenizer, conversations)
    if max_prompt_tokens:
        prompts = [p[-max_prompt_tokens:] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    pad_id = tokenizer.pad_token_id
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc="generate", disable=len(order) <= batch_size):
        batch_ids = [prompts[i] for i in order[start:start + batch_size]]
        width = max(len(p) for p in batch_ids)
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch_ids])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch_ids])
        with torch.inference_mode():
            generated = model.generate(input_ids=input_ids, attention_mask=attention, do_sample=False,
                                       max_new_tokens=max_new_tokens, pad_token_id=pad_id,
                                       eos_token_id=tokenizer.eos_token_id)
        for row, index in enumerate(order[start:start + batch_size]):
            outputs[index] = tokenizer.decode(generated[row, width:], skip_special_tokens=True).strip()
    return outputs


def eval_examples(examples: list[dict], max_dialogues: int) -> list[dict]:
    """The test dialogues that predict generates for and score scores: the first N (0: all)."""
    return examples[: max_dialogues or None]


def turn_id(example: dict, turn: dict) -> str:
    return f"{example['id']}:{turn['index']}"


def predict_dialogue_turns(model, tokenizer, examples: Sequence[dict], *, batch_size: int,
                           max_new_tokens: int) -> list[dict]:
    """Teacher-forced prediction: one generation per gold assistant turn, on the gold history."""
    from lib.templates import prompt_messages

    keys, conversations = [], []
    for example in examples:
        for turn in example["gold"]:
            keys.append(turn_id(example, turn))
            conversations.append(prompt_messages(example, turn))
    outputs = generate(model, tokenizer, conversations, batch_size=batch_size, max_new_tokens=max_new_tokens)
    return [{"id": key, "output": output} for key, output in zip(keys, outputs)]
