"""Length fit: keep a row within `format.max_length` tokens, or drop it (`format.overflow`).

With `truncate_turns`, a conversation keeps its longest prefix of whole turns (chat, text) and a
prompt/completion row loses its oldest history turns; shots always go before any history does.
A row is never cut inside a turn, so the gold turns that remain are exactly what was trained.
"""
from __future__ import annotations

from dataclasses import replace

from synthtune.core.config import FormatParams
from synthtune.model.formats.layouts import Layout, Spec, text_row
from synthtune.model.formats.prompts import text_ids, token_length, with_eos


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


def fit_spec(spec: Spec, layout: Layout, tokenizer, params: FormatParams
             ) -> tuple[Spec, str, str, list[int], bool] | None:
    """(spec, prompt, completion, token ids, truncated) within max_length: shots go first (farthest first),
    then, with overflow truncate_turns, the oldest history turns; None when even that does not fit."""
    truncated = False
    while True:
        prompt, completion = layout(spec)
        completion = with_eos(completion, tokenizer)
        ids = text_ids(tokenizer, prompt + completion)
        if len(ids) <= params.max_length:
            return spec, prompt, completion, ids, truncated
        if spec.shots:
            spec = replace(spec, shots=spec.shots[:-1])
        elif params.overflow == "truncate_turns" and spec.history:
            history = list(spec.history[1:])
            while history and history[0]["role"] != "user":   # the history restarts at a user turn
                history.pop(0)
            spec, truncated = replace(spec, history=tuple(history)), True
        else:
            return None


def fit_text(example: dict | None, raw: dict | None, tokenizer, params: FormatParams) -> tuple[dict, int, bool] | None:
    """A text row within max_length: (row, tokens, truncated), or None (overflow drop, or nothing fits).

    A conversation keeps its longest prefix of whole turns (as chat does); raw text is cut at a token
    boundary, its EOS kept.
    """
    row = text_row(example, tokenizer) if example is not None else raw
    tokens = len(text_ids(tokenizer, row["text"]))
    if tokens <= params.max_length:
        return row, tokens, False
    if params.overflow == "drop":
        return None
    if example is not None:
        fitted = None
        for end in reversed([i + 1 for i, m in enumerate(example["messages"]) if m["role"] == "assistant"]):
            cut = {**example, "messages": example["messages"][:end],
                   "gold": [g for g in example["gold"] if g["index"] < end]}
            fitted = text_row(cut, tokenizer)
            tokens = len(text_ids(tokenizer, fitted["text"]))
            if tokens <= params.max_length:
                return fitted, tokens, True
        return None
    offsets = tokenizer(text=raw["text"], return_offsets_mapping=True)["offset_mapping"]
    for keep in range(params.max_length - 1, 0, -1):
        text = with_eos(raw["text"][: offsets[keep][0]], tokenizer)
        tokens = len(text_ids(tokenizer, text))   # re-tokenized: a cut can merge or split tokens at the end
        if tokens <= params.max_length:
            return {**raw, "text": text}, tokens, True
    return None
