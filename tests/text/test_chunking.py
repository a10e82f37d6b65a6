"""Chunking: sentence chunks (docqa) and token windows (RAG), one packing underneath."""
from __future__ import annotations

from pathlib import Path

import pytest

from synthtune.core.config import TeacherParams
from synthtune.core.errors import ParamsError
from synthtune.llm.teacher import Teacher
from synthtune.text.chunking import drop_short, pack, sentence_chunks, token_chunks
from synthtune.text.documents import split_sentences

SEED_DOCS = Path(__file__).resolve().parents[2] / "data/seeds/qa_docs"


@pytest.fixture(scope="module")
def template_teacher():
    with Teacher(TeacherParams()) as teacher:
        yield teacher


def test_chunks_respect_size_overlap_and_sections(template_teacher):
    text = (SEED_DOCS / "kestrel-k2-espresso-manual.md").read_text()
    count = template_teacher.count_tokens
    chunks = sentence_chunks("k2.md", "k2.md", text, count, size=60, overlap=30)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.tokens <= 60 and chunk.text.strip()
    sentences = [[s for p in c.text.split("\n\n") for s in split_sentences(p)] for c in chunks]
    shared = 0
    for (a, sa), (b, sb) in zip(zip(chunks, sentences), zip(chunks[1:], sentences[1:])):
        assert any(s not in sa for s in sb)                       # every chunk brings new text
        n = next((k for k in range(len(sb), 0, -1) if sa[-k:] == sb[:k]), 0)
        assert n == 0 or a.section == b.section                   # overlap = whole sentences, within a section
        assert not set(sb[n:]) & set(sa)
        shared += n > 0
    assert shared >= 2
    with pytest.raises(Exception, match="chunk_overlap"):
        sentence_chunks("k2.md", "k2.md", text, count, size=20, overlap=20)


def test_drop_short_keeps_the_upper_three_quarters(template_teacher):
    chunks = sentence_chunks("a.md", "a.md", (SEED_DOCS / "synthtune-pipeline.md").read_text(),
                            template_teacher.count_tokens, 80, 16)
    kept, threshold = drop_short(chunks, 25.0)
    assert all(c.tokens >= threshold for c in kept)
    assert len(kept) < len(chunks) and len(kept) >= 0.7 * len(chunks)




def test_chunks_are_token_windows_with_overlap(tiny_tokenizer):
    text = " ".join(f"word{i}" for i in range(200))
    chunks = token_chunks("d.md", text, tiny_tokenizer, size=32, overlap=8)
    n_tokens = len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert all(c["tokens"] == 32 for c in chunks[:-1]) and 0 < chunks[-1]["tokens"] <= 32
    assert sum(c["tokens"] for c in chunks) - 8 * (len(chunks) - 1) == n_tokens
    assert all(text[c["start"]:c["end"]] == c["text"] for c in chunks)
    assert chunks[1]["start"] < chunks[0]["end"]                        # the overlap is shared text
    with pytest.raises(ParamsError, match="chunk_overlap"):
        token_chunks("d.md", text, tiny_tokenizer, size=8, overlap=8)
    with pytest.raises(ParamsError, match=r"^params.yaml: rag.chunk_overlap \(8\) must be smaller than rag.chunk_tokens"):
        token_chunks("d.md", text, tiny_tokenizer, size=8, overlap=8, key="rag.")


@pytest.mark.parametrize("n,size,overlap", [(0, 4, 1), (1, 4, 1), (10, 4, 0), (10, 4, 3), (300, 50, 7), (17, 5, 4)])
def test_one_token_units_pack_into_fixed_windows(n, size, overlap):
    """pack() over one-token units is the classic sliding window: size tokens, stepping size - overlap."""
    expected, start = [], 0
    while start < n:
        end = min(start + size, n)
        expected.append((start, end))
        if end == n:
            break
        start = end - overlap
    assert pack([1] * n, size, overlap) == expected


def test_pack_keeps_whole_units_and_gives_long_units_their_own_window():
    assert pack([3, 3, 3, 9, 2], size=6, overlap=3) == [(0, 2), (1, 3), (3, 4), (4, 5)]
