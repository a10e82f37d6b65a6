"""The system instruction of annotated dialogues: what a chat model must write, and which intents exist.

A pretrained instruct model scored zero-shot cannot guess the state-annotation format or the
domain's intent names; a fine-tuned one learns both from the rows. With `format.instruction: true`
(the default) every chat row of an annotated dialogue starts with the same system message, listing
the intents its source uses in train and the output layout, so base and tuned models are asked the
same question (the SynTOD seed puts the intent list in its prompt header for the same reason). The
instruction is a system turn: never trained on, counted in the row's tokens. Rows without
annotations (document QA, instructions) get none.
"""
from __future__ import annotations

from collections.abc import Sequence

INSTRUCTION = ("For each user message, first write one line of JSON with the user's intent and the slot values "
               'they gave, {{"intent": "...", "slots": {{...}}}}, then your reply on the next line. '
               "Intents: {intents}.")


def instruction_text(intents: Sequence[str]) -> str:
    return INSTRUCTION.format(intents=", ".join(intents))


def lead_with_system(example: dict, text: str) -> dict:
    """A chat example whose first message is a system turn starting with `text`: merged into a system
    message it already has, else a new one, with the gold turn indices moved by it (few-shot shots
    and the instruction both lead rows this way)."""
    messages = example["messages"]
    if messages and messages[0]["role"] == "system":
        return {**example, "messages": [{"role": "system", "content": text + "\n\n" + messages[0]["content"]},
                                        *messages[1:]]}
    gold = [{**g, "index": g["index"] + 1} for g in example["gold"]]
    return {**example, "messages": [{"role": "system", "content": text}, *messages], "gold": gold}


def with_instruction(example: dict, intents: Sequence[str]) -> dict:
    """A chat example led by the instruction; unchanged without gold turns or intents."""
    if not example.get("gold") or not intents:
        return example
    return lead_with_system(example, instruction_text(intents))
