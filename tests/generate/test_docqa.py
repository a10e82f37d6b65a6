"""Document-grounded QA: documents (md, txt, pdf) → chunks → drop short → question → answer → records."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from synthtune.core.config import SourceParams, TeacherParams
from synthtune.generate.docqa import (chunk_document, drop_short, generate_docqa, load_documents, rule_answer, rule_question,
                       split_sections, split_sentences)
from synthtune.core.records import validate_record
from synthtune.llm.teacher import Teacher

SEED_DOCS = Path(__file__).resolve().parents[2] / "data/seeds/qa_docs"


def write_text_pdf(path: Path, pages: list[list[str]]) -> None:
    """A minimal PDF 1.4: Helvetica text lines, one content stream per page (how the seed PDF was made)."""
    def esc(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", None, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        stream = ("BT /F1 11 Tf 14 TL 56 780 Td\n" + "".join(f"({esc(line)}) Tj T*\n" for line in lines) + "ET")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream".encode("latin-1"))
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {len(objects)} 0 R "
                       f"/Resources << /Font << /F1 3 0 R >> >> >>".encode())
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))


def text_to_pdf_pages(text: str, width: int = 88, per_page: int = 52) -> list[list[str]]:
    """Paragraphs wrapped to `width`; a blank line between paragraphs; titles stay on their own line."""
    lines: list[str] = []
    for paragraph in text.strip().split("\n"):
        lines.extend(textwrap.wrap(paragraph, width) or [""])
        lines.append("")
    return [lines[i:i + per_page] for i in range(0, len(lines), per_page)]


@pytest.fixture(scope="module")
def template_teacher():
    with Teacher(TeacherParams()) as teacher:
        yield teacher


def test_sentences_and_sections():
    assert split_sentences("Use 18 g, e.g. for a double. Tamp it. 25 s is good.") == [
        "Use 18 g, e.g. for a double.", "Tamp it.", "25 s is good."]
    sections = split_sections("# Title\n\nIntro text here.\n\n## Cleaning\n\n- Empty the tray.\n- Rinse it.\n", True)
    assert sections == [("Title", ["Intro text here."]), ("Cleaning", ["Empty the tray. Rinse it."])]
    plain = split_sections("Installation\nSwitch off the power first.\nThen remove it.\n\nMore text.", False)
    assert plain == [("Installation", ["Switch off the power first. Then remove it.", "More text."])]


def test_chunks_respect_size_overlap_and_sections(template_teacher):
    text = (SEED_DOCS / "kestrel-k2-espresso-manual.md").read_text()
    count = template_teacher.count_tokens
    chunks = chunk_document("k2.md", "k2.md", text, count, size=60, overlap=30)
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
        chunk_document("k2.md", "k2.md", text, count, size=20, overlap=20)


def test_drop_short_keeps_the_upper_three_quarters(template_teacher):
    chunks = chunk_document("a.md", "a.md", (SEED_DOCS / "synthtune-pipeline.md").read_text(),
                            template_teacher.count_tokens, 80, 16)
    kept, threshold = drop_short(chunks, 25.0)
    assert all(c.tokens >= threshold for c in kept)
    assert len(kept) < len(chunks) and len(kept) >= 0.7 * len(chunks)


def test_rule_questions_are_answered_by_their_chunk():
    context = ("If the shot runs faster than 20 seconds, the grind is too coarse. Hold the cup button and the "
               "steam button together for five seconds to start the backflush program.")
    questions = {rule_question(context, "Pulling a shot", f"k{i}") for i in range(20)}
    assert questions <= {"What happens if the shot runs faster than 20 seconds?",
                         "How do you start the backflush program?"}
    assert rule_answer(context, "How do you start the backflush program?").startswith("Hold the cup button")
    assert rule_question("Short. Tiny.", "Warning lights", "k").startswith("What does the document say about")


def test_pdf_text_and_unreadable_documents(tmp_path):
    write_text_pdf(tmp_path / "club.pdf", text_to_pdf_pages(
        "Boat rules\nEvery crew writes its route on the board before launching the boat."))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (tmp_path / "notes.txt").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "ignored.json").write_text("{}")
    docs, rejects = load_documents(tmp_path)
    assert [p.name for p in docs] == ["club.pdf"]
    assert "writes its route on the board" in " ".join(docs[tmp_path / "club.pdf"].split())
    assert sorted(Path(r["file"]).name for r in rejects) == ["broken.pdf", "notes.txt"]
    assert all(r["reason"].startswith("document: ") for r in rejects)


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
