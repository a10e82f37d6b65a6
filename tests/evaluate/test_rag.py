"""RAG: token chunking, both retrievers, the hit definition, the default retriever, answer scoring."""
import json

import pytest

from synthtune.core.config import RagParams
from synthtune.core.errors import InputError, ParamsError
from synthtune.evaluate.rag import build_benchmark, chunk_document, is_hit, load_documents, make_index, score_answers


def test_chunks_are_token_windows_with_overlap(tiny_tokenizer):
    text = " ".join(f"word{i}" for i in range(200))
    chunks = chunk_document("d.md", text, tiny_tokenizer, size=32, overlap=8)
    n_tokens = len(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert all(c["tokens"] == 32 for c in chunks[:-1]) and 0 < chunks[-1]["tokens"] <= 32
    assert sum(c["tokens"] for c in chunks) - 8 * (len(chunks) - 1) == n_tokens
    assert all(text[c["start"]:c["end"]] == c["text"] for c in chunks)
    assert chunks[1]["start"] < chunks[0]["end"]                        # the overlap is shared text
    with pytest.raises(ParamsError, match="chunk_overlap"):
        chunk_document("d.md", text, tiny_tokenizer, size=8, overlap=8)


def test_hit_needs_the_whole_evidence_inside_the_retrieved_chunks():
    a, b, other = {"doc": "d", "start": 0, "end": 50}, {"doc": "d", "start": 40, "end": 90}, {"doc": "e", "start": 0, "end": 999}
    assert is_hit((10, 45), "d", [a])
    assert not is_hit((30, 70), "d", [a]) and is_hit((30, 70), "d", [b, a])   # spans two retrieved chunks
    assert not is_hit((30, 70), "d", [other, a])


def test_both_retrievers_find_the_obvious_chunk():
    texts = ["knife skills: a brunoise is a fine dice", "bread needs yeast and a long rise", "store rice in the fridge"]
    for kind in ("bm25", "tfidf"):
        assert make_index(kind, texts).search(["how fine is a brunoise dice?", "what makes bread rise"], 1).tolist() == [[0], [1]]


@pytest.fixture(scope="module")
def shipped(root):
    docs = load_documents(root / "data/seeds/docs")
    questions = [json.loads(line) for line in (root / "data/seeds/rag_questions.jsonl").read_text().splitlines()]
    return docs, questions


def test_both_retrievers_are_measured_and_the_chosen_one_feeds_the_prompts(shipped, tiny_tokenizer):
    # (which retriever is better depends on the tokenizer: docs/architecture.md has the measured grid)
    docs, questions = shipped
    for retriever in ("bm25", "tfidf"):
        bench = build_benchmark(docs, questions, tiny_tokenizer, RagParams(retriever=retriever))
        assert set(bench.metrics) == {"hit_at_k_bm25", "hit_at_k_tfidf"} and len(bench.rows) == len(questions)
        rate = sum(r["hit"] for r in bench.rows) / len(bench.rows)
        assert round(rate, 4) == bench.metrics[f"hit_at_k_{retriever}"]
    assert bench.rows[0]["messages"][0]["content"].startswith("Use the following pieces of context")


def test_answers_are_scored_against_the_references(shipped, tiny_tokenizer):
    docs, questions = shipped
    bench = build_benchmark(docs, questions[:6], tiny_tokenizer, RagParams(retriever="bm25"))
    perfect, sims = score_answers(bench, [r["reference"] for r in bench.rows])
    assert perfect["cosine"] == pytest.approx(1.0, abs=1e-4) and len(sims) == 6 and perfect["questions"] == 6
    empty, _ = score_answers(bench, ["" for _ in bench.rows])
    assert empty["cosine"] == 0.0 and empty["hit_at_k"] == perfect["hit_at_k"] == bench.metrics["hit_at_k_bm25"]


def test_bad_questions_are_one_line_errors(shipped, tiny_tokenizer):
    docs, questions = shipped
    with pytest.raises(InputError, match="q01: its evidence is not a verbatim passage"):
        build_benchmark(docs, [{**questions[0], "evidence": "not in the text"}], tiny_tokenizer, RagParams())
    with pytest.raises(InputError, match="unknown document 'nope.md'"):
        build_benchmark(docs, [{**questions[0], "doc": "nope.md"}], tiny_tokenizer, RagParams())
    with pytest.raises(InputError, match="no questions"):
        build_benchmark(docs, [], tiny_tokenizer, RagParams())
