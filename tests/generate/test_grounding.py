"""Grounded document QA: an answer must be close to its chunk and state only the chunk's figures and names."""
from __future__ import annotations

import json

from synthtune.core.config import SourceParams, TeacherParams
from synthtune.generate.docqa import generate_docqa
from synthtune.generate.grounding import grounding, grounding_metrics, unsupported_terms
from synthtune.llm.teacher import Teacher

CHUNK = ("The Beacon 900 front light is rated 900 lumens. On the high setting it runs for 3.5 hours; "
         "on the eco setting for 11 hours. Charge it over USB-C for 4 hours before the first ride.")


def test_numbers_and_names_must_occur_in_the_chunk():
    assert unsupported_terms("The Beacon light is rated 900 lumens.", CHUNK) == []
    assert unsupported_terms("It is rated 200 lumens and runs 3.50 hours.", CHUNK) == ["200"]
    assert unsupported_terms("Charge it with the Garmin cable over USB-C.", CHUNK) == ["Garmin"]
    assert unsupported_terms("Yes. It lasts 11 hours. Charge it first.", CHUNK) == []   # sentence capitals


def test_grounding_quarantines_wrong_figures_and_off_topic_answers():
    answers = ["The light is rated 900 lumens.", "The light is rated 200 lumens.",
               "Carbonara needs eggs, pecorino and guanciale."]
    scores = grounding(answers, [CHUNK] * 3, "sentence-transformers:minilm", min_cosine=0.3)
    assert [s["ok"] for s in scores] == [True, False, False]
    assert scores[1]["reason"] == "answer states 200 not found in its chunk"
    assert scores[2]["reason"].startswith("answer-chunk cosine") and scores[2]["cosine"] < 0.3 < scores[0]["cosine"]
    metrics = grounding_metrics(scores)
    assert metrics["ungrounded_low_cosine"] == 1 and metrics["ungrounded_unsupported_terms"] == 1
    assert sum(metrics["grounding_histogram"].values()) == 3


def test_docqa_keeps_only_grounded_answers(tmp_path):
    from tests.llm.teacher_server import TeacherServer

    doc = tmp_path / "docs"
    doc.mkdir()
    (doc / "light.md").write_text("# Beacon 900\n\n" + CHUNK + "\n\n# Charging\n\n" + CHUNK.replace("900", "700"))
    answers = iter(["It is rated 900 lumens.", "It is rated 200 lumens."])

    def responder(body):
        if body["messages"][0]["content"].startswith("You write one exam question"):
            assert body["response_format"]["type"] == "json_schema"       # structured outputs are asked for
            return json.dumps({"question": "How bright is the light?"})
        return "It is rated 200 lumens." if "700" in body["messages"][-1]["content"] else next(answers)

    source = SourceParams(kind="docqa", path=str(doc), chunk_tokens=200, min_length_percentile=0.0)
    with TeacherServer(responder=responder) as server:
        params = TeacherParams(backend="openai", base_url=server.base_url, api_key_env=None, backoff_s=0.0)
        with Teacher(params, cache_dir=tmp_path / "cache") as teacher:
            out = generate_docqa("lights", source, doc, teacher, seed=1)
    assert [r["messages"][1]["content"] for r in out.records] == ["It is rated 900 lumens."]
    assert [(r["code"], r["reason"]) for r in out.rejects] == [
        ("ungrounded", "answer not grounded in its chunk: answer states 200 not found in its chunk")]
    assert out.metrics["grounding_scored"] == 2 and out.metrics["ungrounded_unsupported_terms"] == 1
