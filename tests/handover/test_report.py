"""The run report is one self-contained page that a real browser renders with every image and no error."""
import re

from synthtune.handover.report import build_report, ranked_turns
from synthtune.handover.run_files import RunMetrics
from tests.browser import is_blank, open_page
from tests.handover.conftest import PREDICTIONS, SCORE, TEST


def page(run_dir) -> str:
    return build_report(run_dir / "plots", RunMetrics(run_dir / "metrics"), run_dir / "dvclive/train", TEST,
                        PREDICTIONS, "Run report: test", 1, "tuned")


def test_report_is_self_contained_and_shows_the_scorecard(run_dir):
    html = page(run_dir)
    assert not re.search(r"<script|src=\"(?!data:)|href=", html)     # nothing to fetch, nothing to run
    assert "<td>0.9134 <small>[0.866, 0.955]</small></td>" in html
    assert html.count("<img ") == 5       # bars, loss, confusion, lengths, and the one stage PNG present
    assert "&lt;b&gt;bye&lt;/b&gt;" in html                            # model output is escaped, never markup


def test_best_and_worst_turns_rank_right_intent_then_reply_overlap():
    best, worst = ranked_turns(TEST, PREDICTIONS, 1)
    assert best[0]["id"] == "d0:1" and best[0]["intent_ok"]          # right intent, exact reply
    assert worst[0]["id"] == "d1:1" and not worst[0]["intent_ok"]
    best, worst = ranked_turns(TEST, PREDICTIONS, 0)
    assert best == [] and worst == []


def test_report_opens_in_headless_chromium_with_every_image(run_dir, tmp_path):
    path = tmp_path / "index.html"
    path.write_text(page(run_dir))
    seen = open_page(path, tmp_path / "shot.png")
    assert seen["errors"] == [] and seen["failed"] == []
    assert len(seen["images"]) == 5 and all(done and w > 0 and h > 0 for done, w, h in seen["images"])
    assert "Scorecard" in seen["text"] and str(SCORE["tuned"]["slot_f1"]) in seen["text"]
    assert not is_blank(tmp_path / "shot.png")


def test_report_shows_the_judge_and_says_when_it_is_flagged(run_dir):
    import json

    assert "LLM judge" not in page(run_dir)                 # no judge stage output: no section
    judge = {"base": {"relevance_mean": 0.4125, "relevance_judged": 24}, "tuned": {"relevance_mean": 1.25},
             "judge": {"judge_pairwise_accuracy": 0.25, "judge_flagged": True, "judge_model": "base (local)"}}
    (run_dir / "metrics" / "judge.json").write_text(json.dumps(judge))
    html = page(run_dir)
    assert "LLM judge" in html and "1.25" in html and "0.4125" in html and "Flagged:" in html
    judge["judge"]["judge_flagged"] = False
    (run_dir / "metrics" / "judge.json").write_text(json.dumps(judge))
    assert "Flagged:" not in page(run_dir)


def test_report_plots_document_qa_grounding_with_its_threshold(run_dir):
    """Issue 16: the grounding distribution of generated answers is in metrics and in a chart."""
    from tests.handover.conftest import GENERATE

    bins = {f"cos_{i * 10:02d}_{i * 10 + 10}": n for i, n in enumerate([0, 0, 1, 2, 3, 3, 3, 10, 1, 2])}
    generated = {**GENERATE, "qa_docs": {**GENERATE["qa_docs"], "grounding_histogram": bins}}
    plain = build_report(run_dir / "plots", RunMetrics(run_dir / "metrics"), run_dir / "dvclive/train", TEST,
                         PREDICTIONS, "Run report: test", 1, "tuned", generated=GENERATE)
    html = build_report(run_dir / "plots", RunMetrics(run_dir / "metrics"), run_dir / "dvclive/train", TEST,
                        PREDICTIONS, "Run report: test", 1, "tuned", generated=generated,
                        min_grounding={"qa_docs": 0.3})
    assert plain.count("<img ") == 5 and html.count("<img ") == 6
    assert "grounded in their chunk (generate@qa_docs)" in html
