"""Document-grounded QA: documents (md, txt, pdf) → chunks → drop short → question → answer → records.

Reading documents and chunking them are tested in tests/text.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthtune.core.config import SourceParams, TeacherParams
from synthtune.generate.docqa import generate_docqa, rule_answer, rule_question
from synthtune.core.records import validate_record
from synthtune.llm.teacher import Teacher

SEED_DOCS = Path(__file__).resolve().parents[2] / "data/seeds/qa_docs"


@pytest.fixture(scope="module")
def template_teacher():
    with Teacher(TeacherParams()) as teacher:
        yield teacher


def test_rule_questions_are_answered_by_their_chunk():
    context = ("If the shot runs faster than 20 seconds, the grind is too coarse. Hold the cup button and the "
               "steam button together for five seconds to start the backflush program.")
    questions = {rule_question(context, "Pulling a shot", f"k{i}") for i in range(20)}
    assert questions <= {"What happens if the shot runs faster than 20 seconds?",
                         "How do you start the backflush program?"}
    assert rule_answer(context, "How do you start the backflush program?").startswith("Hold the cup button")
    assert rule_question("Short. Tiny.", "Warning lights", "k").startswith("What does the document say about")


def test_seed_documents_give_valid_grounded_records(template_teacher):
    source = SourceParams(kind="docqa", path=str(SEED_DOCS), domain="manuals")
    out = generate_docqa("qa_docs", source, SEED_DOCS, template_teacher, seed=42)
    assert out.rejects == []
    assert {r["meta"]["doc"] for r in out.records} >= {"tidewater-rowing-club-handbook.pdf", "harbor-h5-thermostat.txt"}
    assert out.metrics["chunks_kept"] < out.metrics["chunks"] and out.metrics["records"] == len(out.records) >= 20
    for record in out.records:
        assert validate_record(record) is None
        question, answer = (m["content"] for m in record["messages"])
        assert question.endswith("?") and answer in record["meta"]["context"]
        assert record["meta"]["reference"] == answer and record["group"].startswith(record["meta"]["doc"] + "#")
    again = generate_docqa("qa_docs", source, SEED_DOCS, template_teacher, seed=42)
    assert again.records == out.records                     # deterministic
    assert len({r["messages"][0]["content"] for r in out.records}) >= 0.8 * len(out.records)


def test_docqa_through_an_openai_server_with_quarantine(tmp_path):
    from tests.llm.teacher_server import TeacherServer

    doc = tmp_path / "docs"
    doc.mkdir()
    (doc / "a.md").write_text("# Pump\n\n" + " ".join(f"The pump number {i} is a unit that moves water at "
                                                       f"{i} litres per minute." for i in range(12)))

    def responder(body):
        user = body["messages"][-1]["content"]
        if "Your previous answer was not valid JSON" in user:
            return "still not json"
        if body["messages"][0]["content"].startswith("You write one exam question"):
            return json.dumps({"question": "How fast does pump 3 move water?"}) if "number 3 " in user else (
                "not json [[" if "number 0 " in user else json.dumps({"question": "What is a pump?"}))
        return "It moves water."

    source = SourceParams(kind="docqa", path=str(doc), chunk_tokens=40, chunk_overlap=8, min_length_percentile=0.0)
    with TeacherServer(responder=responder) as server:
        params = TeacherParams(backend="openai", base_url=server.base_url, api_key_env=None, backoff_s=0.0)
        with Teacher(params, cache_dir=tmp_path / "cache") as teacher:
            out = generate_docqa("pumps", source, doc, teacher, seed=1)
    bad = [r for r in out.rejects if "malformed JSON after one repair" in r["reason"]]
    assert len(bad) == 1 and bad[0]["file"].endswith("a.md")
    assert out.records and all(r["messages"][1]["content"] == "It moves water." for r in out.records)


def test_generate_stage_docqa_and_dry_run(tmp_path, root):
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sources"] = {"qa": {"kind": "docqa", "path": str(SEED_DOCS), "chunk_tokens": 96}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = [sys.executable, "-m", "stages.generate", "qa", str(SEED_DOCS), str(tmp_path / "raw.jsonl"),
            str(tmp_path / "rej.jsonl"), str(tmp_path / "m.json"), "--params", str(tmp_path / "params.yaml"),
            "--teacher-cache", str(tmp_path / "cache")]
    dry = subprocess.run(args + ["--dry-run"], cwd=root, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "dry run: teacher template" in dry.stdout and "to send" in dry.stdout
    assert not (tmp_path / "raw.jsonl").exists()
    run = subprocess.run(args, cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
    assert records and all(r["meta"]["context"] for r in records)
    assert json.loads((tmp_path / "m.json").read_text())["records"] == len(records)
    assert (tmp_path / "cache").is_dir()
