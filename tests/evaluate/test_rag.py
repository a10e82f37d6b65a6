"""RAG: documents, the hit definition, the default retriever, answer scoring.

Token chunking and the retrievers themselves are tested in tests/text.
"""
import json

import pytest

from synthtune.core.config import RagParams
from synthtune.core.errors import InputError, ParamsError
from synthtune.evaluate.rag import build_benchmark, is_hit, load_documents, score_answers
from tests.text.test_documents import text_to_pdf_pages, write_text_pdf


def test_hit_needs_the_whole_evidence_inside_the_retrieved_chunks():
    a, b, other = {"doc": "d", "start": 0, "end": 50}, {"doc": "d", "start": 40, "end": 90}, {"doc": "e", "start": 0, "end": 999}
    assert is_hit((10, 45), "d", [a])
    assert not is_hit((30, 70), "d", [a]) and is_hit((30, 70), "d", [b, a])   # spans two retrieved chunks
    assert not is_hit((30, 70), "d", [other, a])


@pytest.fixture(scope="module")
def shipped(root):
    docs = load_documents(root / "data/seeds/docs")
    questions = [json.loads(line) for line in (root / "data/seeds/rag_questions.jsonl").read_text().splitlines()]
    return docs, questions


def test_every_retriever_is_measured_and_the_headline_one_gives_the_rows(shipped, tiny_tokenizer):
    # (which retriever is better depends on the tokenizer: docs/architecture.md has the measured grid)
    docs, questions = shipped
    for retriever in ("bm25", "tfidf"):
        bench = build_benchmark(docs, questions, tiny_tokenizer, RagParams(retriever=retriever,
                                                                           retrievers=["bm25", "tfidf"]))
        assert set(bench.metrics) == {"hit_at_k_bm25", "hit_at_k_tfidf"} and len(bench.rows) == len(questions)
        rate = sum(r["hit"] for r in bench.rows) / len(bench.rows)
        assert round(rate, 4) == bench.metrics[f"hit_at_k_{retriever}"]
        assert bench.rows is bench.retrieved[retriever]
    assert bench.rows[0]["messages"][0]["content"].startswith("Use the following pieces of context")


def test_dense_retrieval_finds_paraphrased_evidence(shipped, tiny_tokenizer):
    """MiniLM retrieval (the default dense retriever) on the shipped questions: it must do at least as
    well as chance by far, and shared prompts between retrievers are generated once."""
    docs, questions = shipped
    bench = build_benchmark(docs, questions, tiny_tokenizer, RagParams(retriever="dense"))
    assert set(bench.metrics) == {"hit_at_k_tfidf", "hit_at_k_bm25", "hit_at_k_dense"}
    chance = 3 / len(bench.chunks)
    assert bench.metrics["hit_at_k_dense"] > 10 * chance
    prompts = bench.prompts()
    assert len(questions) <= len(prompts) < 3 * len(questions)   # the retrievers agree on some questions
    answers = [f"answer {i}" for i in range(len(prompts))]
    laid_out = bench.answers_by_retriever(answers)
    for kind, rows in bench.retrieved.items():   # each question's answer is the one to its own prompt
        assert [answers[prompts.index(r["messages"])] for r in rows] == laid_out[kind]
    with pytest.raises(Exception, match="rag.retriever 'dense' must be one of rag.retrievers"):
        RagParams(retriever="dense", retrievers=["bm25"])


def test_answers_are_scored_against_the_references(shipped, tiny_tokenizer):
    docs, questions = shipped
    bench = build_benchmark(docs, questions[:6], tiny_tokenizer, RagParams(retriever="bm25",
                                                                           retrievers=["bm25", "tfidf"]))
    perfect, sims = score_answers(bench, [r["reference"] for r in bench.rows])
    assert perfect["cosine"] == pytest.approx(1.0, abs=1e-4) and len(sims) == 6 and perfect["questions"] == 6
    empty, _ = score_answers(bench, ["" for _ in bench.rows])
    assert empty["cosine"] == 0.0 and empty["hit_at_k"] == perfect["hit_at_k"] == bench.metrics["hit_at_k_bm25"]
    mixed, _ = score_answers(bench, {"bm25": [r["reference"] for r in bench.rows], "tfidf": ["" for _ in bench.rows]})
    assert mixed["cosine"] == mixed["cosine_bm25"] == pytest.approx(1.0, abs=1e-4) and mixed["cosine_tfidf"] == 0.0


def test_bad_questions_are_one_line_errors(shipped, tiny_tokenizer):
    docs, questions = shipped
    with pytest.raises(InputError, match="q01: its evidence is not a verbatim passage"):
        build_benchmark(docs, [{**questions[0], "evidence": "not in the text"}], tiny_tokenizer, RagParams())
    with pytest.raises(InputError, match="unknown document 'nope.md'"):
        build_benchmark(docs, [{**questions[0], "doc": "nope.md"}], tiny_tokenizer, RagParams())
    with pytest.raises(InputError, match="no questions"):
        build_benchmark(docs, [], tiny_tokenizer, RagParams())


def test_documents_keep_their_order_and_pdfs_are_read(root, tmp_path, tiny_tokenizer):
    docs = load_documents(root / "data/seeds/docs")
    assert list(docs) == sorted(p.name for p in (root / "data/seeds/docs").glob("*.md"))
    write_text_pdf(tmp_path / "boats.pdf", text_to_pdf_pages(
        "Boat rules\nEvery crew writes its route on the board before launching the boat."))
    (tmp_path / "notes.txt").write_text("Rinse the rice twice before cooking it.")
    docs = load_documents(tmp_path)
    assert list(docs) == ["boats.pdf", "notes.txt"] and "route on the board" in " ".join(docs["boats.pdf"].split())
    question = {"id": "p1", "doc": "notes.txt", "question": "How often do I rinse rice?", "answer": "Twice.",
                "evidence": "Rinse the rice twice"}
    bench = build_benchmark(docs, [question], tiny_tokenizer, RagParams(retriever="bm25", retrievers=["bm25"], top_k=1))
    assert bench.rows[0]["hit"] and bench.metrics["hit_at_k_bm25"] == 1.0
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    with pytest.raises(InputError, match="broken.pdf: document: unreadable PDF"):
        load_documents(tmp_path)


def test_overlap_must_leave_room(shipped, tiny_tokenizer):
    docs, questions = shipped
    with pytest.raises(ParamsError, match=r"params.yaml: rag.chunk_overlap \(8\) must be smaller than rag.chunk_tokens \(8\)"):
        build_benchmark(docs, questions, tiny_tokenizer, RagParams(chunk_tokens=8, chunk_overlap=8))
