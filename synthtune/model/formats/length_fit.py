"""Length fit: keep a row within `format.max_length` tokens, or drop it (`format.overflow`).

With `truncate_turns`, a conversation keeps its longest prefix of whole turns (chat, text) and a
prompt/completion row loses its oldest history turns; shots always go before any history does.
A row is never cut inside a turn, so the gold turns that remain are exactly what was trained.

A row far too long is known to be so by its characters, before any tokenizing (`cannot_fit`): a
10 MB row once took 47 s and 2.3 GB to tokenize only to be dropped. The bound is safe, it never
drops a row that would fit, on this premise: every character of the text ends up in some token
(byte-level BPE, byte-fallback SentencePiece: the causal LMs' tokenizers and the tiny model's), and
one token stands for at most `max_token_chars` characters, its longest vocabulary entry as stored
(a byte-level entry holds one character per byte, a SentencePiece `▁` or WordPiece `##` only adds).
Only word characters (letters, digits, `_`) are counted: normalizers and chat templates may collapse
or drop whitespace, control characters and combining marks, never a word character, though Unicode
normalization may compose up to 4 code points into one (NORMALIZATION_MERGE). So a text with more
than max_length * max_token_chars * 4 word characters needs more than max_length tokens. (A
tokenizer that maps a run of unknown characters to one token, WordPiece's [UNK] for a word over 100
characters, breaks the premise; no causal LM here uses one.)
"""
from __future__ import annotations

import re
from dataclasses import replace
from weakref import WeakKeyDictionary

from synthtune.core.config import FormatParams
from synthtune.model.formats.layouts import Layout, Spec, text_row
from synthtune.model.formats.prompts import text_ids, token_length, with_eos

NORMALIZATION_MERGE = 4            # NFC/NFKC compose at most 4 code points into one (e.g. U+1F87)
_NON_WORD = re.compile(r"\W+")
_token_chars: WeakKeyDictionary = WeakKeyDictionary()   # tokenizer -> max_token_chars (get_vocab is slow)


def max_token_chars(tokenizer) -> int | None:
    """Characters one token can stand for at most (its longest vocabulary entry); None: unknown (no bound)."""
    try:
        return _token_chars[tokenizer]
    except (KeyError, TypeError):   # TypeError: an unhashable tokenizer, measured every time
        pass
    get_vocab = getattr(tokenizer, "get_vocab", None)
    value = None
    if get_vocab is not None:
        value = max(map(len, get_vocab()), default=0) or None
    try:
        _token_chars[tokenizer] = value
    except TypeError:
        pass
    return value


def _word_chars_exceed(text: str, limit: int) -> int | None:
    """The end of the stretch of `text` in which its word characters pass `limit`; None: they never do.
    Counted chunk by chunk, so a huge text is read only as far as needed."""
    if len(text) <= limit:
        return None
    count, chunk = 0, max(limit, 4096)
    for start in range(0, len(text), chunk):
        count += len(_NON_WORD.sub("", text[start:start + chunk]))
        if count > limit:
            return start + chunk
    return None


def char_limit(tokenizer, max_length: int) -> int | None:
    """Word characters above which a text cannot fit max_length tokens (see the module doc); None: no bound."""
    per_token = max_token_chars(tokenizer)
    return None if per_token is None else max_length * per_token * NORMALIZATION_MERGE


def cannot_fit(text: str, tokenizer, max_length: int) -> bool:
    """True when `text` needs more than max_length tokens, known from its characters alone (never tokenized)."""
    limit = char_limit(tokenizer, max_length)
    return limit is not None and _word_chars_exceed(text, limit) is not None


def chat_cannot_fit(tokenizer, messages: list[dict], max_length: int, add_generation_prompt: bool = False) -> bool:
    """cannot_fit for a conversation in the chat template. The template is rendered (cheap: no tokenizing)
    only when the contents alone could pass the bound, so ordinary rows pay nothing."""
    limit = char_limit(tokenizer, max_length)
    if limit is None or sum(len(m["content"]) for m in messages if isinstance(m.get("content"), str)) <= limit:
        return False
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    return _word_chars_exceed(rendered, limit) is not None


def fit_length(example: dict, tokenizer, params: FormatParams) -> dict | None:
    """Fit a conversation into max_length tokens: drop it, or keep the longest prefix of whole turns."""
    def fits(messages):
        return (not chat_cannot_fit(tokenizer, messages, params.max_length)
                and token_length(tokenizer, messages) <= params.max_length)

    if fits(example["messages"]):
        return example
    if params.overflow == "drop":
        return None
    ends = [g["index"] + 1 for g in example["gold"]] or [
        i + 1 for i, m in enumerate(example["messages"]) if m["role"] == "assistant"]
    for end in reversed(ends):
        messages = example["messages"][:end]
        if fits(messages):
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
        if not cannot_fit(prompt + completion, tokenizer, params.max_length):
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
    huge = cannot_fit(row["text"], tokenizer, params.max_length)
    tokens = None if huge else len(text_ids(tokenizer, row["text"]))
    if tokens is not None and tokens <= params.max_length:
        return row, tokens, False
    if params.overflow == "drop":
        return None
    if example is not None:
        fitted = None
        for end in reversed([i + 1 for i, m in enumerate(example["messages"]) if m["role"] == "assistant"]):
            cut = {**example, "messages": example["messages"][:end],
                   "gold": [g for g in example["gold"] if g["index"] < end]}
            fitted = text_row(cut, tokenizer)
            if cannot_fit(fitted["text"], tokenizer, params.max_length):
                continue
            tokens = len(text_ids(tokenizer, fitted["text"]))
            if tokens <= params.max_length:
                return fitted, tokens, True
        return None
    text = raw["text"]
    if huge:   # tokenize only a prefix of twice the bound: it holds more than 2 * max_length tokens, and
        # (tokenizers pre-split into words) a cut changes only its last word's tokens, far past those kept
        text = text[:_word_chars_exceed(text, 2 * char_limit(tokenizer, params.max_length)) or len(text)]
    offsets = tokenizer(text=text, return_offsets_mapping=True)["offset_mapping"]
    for keep in range(min(params.max_length, len(offsets)) - 1, 0, -1):
        text = with_eos(raw["text"][: offsets[keep][0]], tokenizer)
        tokens = len(text_ids(tokenizer, text))   # re-tokenized: a cut can merge or split tokens at the end
        if tokens <= params.max_length:
            return {**raw, "text": text}, tokens, True
    return None
