"""Chunking: cut documents into overlapping windows of at most `size` tokens.

Two strategies, because the two consumers need different things (and each one's outputs are
pinned by what it measured before):

* `sentence_chunks` (docqa generation): whole sentences packed within one section, counted in
  the teacher's tokens. A question is written from one chunk and answered from it, so a chunk
  must read as a passage: it never cuts a sentence (unless a sentence alone is longer than
  `size`, then at word boundaries) and never crosses a section heading.
* `token_chunks` (the RAG benchmark, the David & Goliath method: 300-token windows with a
  50-token overlap in the paper): fixed windows of the base model's tokens, mapped back to
  character spans of the document. The benchmark's `hit_at_k` compares those spans with the
  evidence span of each question, and the context the models read is sized in their own tokens.

Both are the same packing over different units (`pack`): units (a sentence, or a single token)
with a length are packed greedily into windows of at most `size`; the next window starts by
repeating the last units of the previous one, at most `overlap` tokens of them, while leaving
room for new text. With one-token units this is exactly a window of `size` tokens stepping by
`size - overlap`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from synthtune.core.errors import ParamsError
from synthtune.text.documents import split_sections, split_sentences


def check_window(size: int, overlap: int, key: str = "") -> None:
    """The overlap must leave room for new text; `key` ('rag.') names the params section."""
    if overlap >= size:
        where = "params.yaml: " if key else ""
        raise ParamsError(f"{where}{key}chunk_overlap ({overlap}) must be smaller than {key}chunk_tokens ({size})")


def pack(lengths: Sequence[int], size: int, overlap: int) -> list[tuple[int, int]]:
    """[(start, end)] unit ranges: greedy windows of <= `size`, neighbours sharing <= `overlap`.

    A unit longer than `size` is a window of its own. Every window brings at least one new unit.
    """
    windows: list[tuple[int, int]] = []
    start = 0
    while start < len(lengths):
        end, total = start, 0
        while end < len(lengths) and (end == start or total + lengths[end] <= size):
            total += lengths[end]
            end += 1
        windows.append((start, end))
        if end == len(lengths):
            break
        back, shared = end, 0                     # the next window repeats the last units
        while (back - 1 > start and shared + lengths[back - 1] <= overlap
               and shared + lengths[back - 1] + lengths[end] <= size):   # room for new text
            back -= 1
            shared += lengths[back]
        start = back
    return windows


# ------------------------------------------------------------------- sentences within sections


@dataclass
class Chunk:
    doc: str
    path: str
    section: str
    index: int
    text: str
    tokens: int


def sentence_chunks(doc: str, path: str, text: str, count: Callable[[str], int], size: int,
                    overlap: int) -> list[Chunk]:
    """Whole sentences packed into chunks of <= `size` tokens, ~`overlap` tokens shared by neighbours."""
    check_window(size, overlap)
    chunks: list[Chunk] = []
    for section, paragraphs in split_sections(text, markdown=path.lower().endswith(".md")):
        units: list[tuple[int, str, int]] = []      # (paragraph, sentence, tokens)
        for p, paragraph in enumerate(paragraphs):
            for sentence in split_sentences(paragraph):
                units.extend((p, piece, count(piece)) for piece in _split_long(sentence, count, size))
        for start, end in pack([n for _, _, n in units], size, overlap):
            body = _join(units[start:end])
            chunks.append(Chunk(doc, path, section, len(chunks), body, count(body)))
    return chunks


def _split_long(sentence: str, count, size: int) -> list[str]:
    if count(sentence) <= size:
        return [sentence]
    words, pieces, current = sentence.split(), [], []
    for word in words:
        if current and count(" ".join(current + [word])) > size:
            pieces.append(" ".join(current))
            current = []
        current.append(word)
    return pieces + [" ".join(current)] if current else pieces


def _join(units) -> str:
    out, last = [], None
    for paragraph, sentence, _ in units:
        if last is not None:
            out.append("\n\n" if paragraph != last else " ")
        out.append(sentence)
        last = paragraph
    return "".join(out)


def drop_short(chunks: list[Chunk], percentile: float) -> tuple[list[Chunk], float]:
    """Chunks at least as long (in tokens) as the given percentile of all chunk lengths."""
    if not chunks or percentile <= 0:
        return chunks, 0.0
    import numpy as np

    threshold = float(np.percentile([c.tokens for c in chunks], percentile))
    return [c for c in chunks if c.tokens >= threshold], threshold


# ------------------------------------------------------------------------------- token windows


def token_chunks(name: str, text: str, tokenizer, size: int, overlap: int, key: str = "") -> list[dict]:
    """Token windows of `size` with `overlap`, cut back to the original text through offsets:
    [{doc, start, end (characters), text, tokens}]."""
    check_window(size, overlap, key)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    return [{"doc": name, "start": offsets[start][0], "end": offsets[end - 1][1],
             "text": text[offsets[start][0]:offsets[end - 1][1]], "tokens": end - start}
            for start, end in pack([1] * len(offsets), size, overlap)]
