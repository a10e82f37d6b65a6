"""The SynTOD relevance judge: prompts, 0/1/2 parsing, per-model shares, and the judge's own validation."""
from __future__ import annotations

import json

import pytest

from synthtune.evaluate.judge import JUDGE_SCHEMA, foreign_reply, judged_turns, relevance, reply_of
from synthtune.llm.teacher import ChatRequest, ChatResponse

EXAMPLES = [{"id": f"d{d}", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": f"hi {d}"},
                                         {"role": "assistant", "content": '{"intent": "greeting", "slots": {}}\nhello'},
                                         {"role": "user", "content": f"find pasta {d}"},
                                         {"role": "assistant", "content": f'{{"intent": "search"}}\nresults {d}'}],
             "gold": [{"index": 2, "intent": "greeting", "slots": {}, "reply": "hello"},
                      {"index": 4, "intent": "search", "slots": {}, "reply": f"results {d}"}]} for d in range(3)]


class Judge:
    """Rates like a good judge (gold 2, foreign 0) or answers whatever `answer(request)` says."""
    backend = "openai"

    def __init__(self, answer):
        self.answer, self.seen = answer, []

    def complete(self, requests, offline=None):
        self.seen.extend(requests)
        out = []
        for request in requests:
            text = self.answer(request)
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            out.append(ChatResponse(text=text, data=data, ok=data is not None))
        return out


def good(request):
    what = request.meta["what"]
    return json.dumps({"score": {"gold": 2, "foreign": 0, "tuned": 2, "base": 1}[what]})


def test_turns_carry_history_without_annotations_or_system_prompt():
    turns = judged_turns(EXAMPLES, limit=4)
    assert [t["id"] for t in turns] == ["d0:2", "d0:4", "d1:2", "d1:4"]
    assert turns[1]["history"] == "USER: hi 0\nASSISTANT: hello\nUSER: find pasta 0" and turns[1]["gold"] == "results 0"
    assert reply_of('{"intent": "x"}\nthe reply') == "the reply" and reply_of("no annotation") == "no annotation"
    assert foreign_reply(turns, 0).startswith(("results 1", "hello")) and "0" not in foreign_reply(turns, 1)


def test_relevance_shares_means_and_a_judge_that_tells_gold_from_foreign():
    turns = judged_turns(EXAMPLES, limit=6)
    preds = {"base": {t["id"]: "x" for t in turns}, "tuned": {t["id"]: '{"intent": "a"}\nresults' for t in turns}}
    judge = Judge(good)
    out = relevance(turns, preds, judge, ChatRequest, min_accuracy=0.6)
    assert out["tuned"]["relevance_mean"] == 2.0 and out["base"]["relevance_share_1"] == 1.0
    assert out["judge"]["judge_pairwise_accuracy"] == 1.0 and out["judge"]["judge_flagged"] is False
    assert all(r.schema == JUDGE_SCHEMA and r.temperature == 0.0 and r.max_tokens <= 16 for r in judge.seen)
    rated = next(r for r in judge.seen if r.meta["what"] == "tuned")
    assert "Reply to rate:\nresults" in rated.messages[0]["content"]       # the reply without its annotation line


def test_a_judge_that_cannot_tell_replies_apart_is_flagged_and_bad_answers_are_counted():
    turns = judged_turns(EXAMPLES, limit=6)
    preds = {"tuned": {t["id"]: "y" for t in turns}}
    out = relevance(turns, preds, Judge(lambda r: '{"score": 1}' if r.meta["what"] != "tuned" else "maybe 3"),
                    ChatRequest, min_accuracy=0.6)
    assert out["judge"]["judge_pairwise_accuracy"] == 0.0 and out["judge"]["judge_flagged"] is True
    assert out["tuned"]["relevance_invalid"] == 6 and out["tuned"]["relevance_mean"] is None
    out = relevance(turns, preds, Judge(lambda r: '{"score": 7}'), ChatRequest, min_accuracy=0.6)
    assert out["judge"]["judge_invalid"] == len(turns) * 3      # 7 is not a label: never guessed


@pytest.mark.parametrize("dry_run", [False, True])
def test_judge_stage_with_the_local_model(tmp_path, tiny_base_dir, dry_run, capsys, root):
    import yaml

    from stages import judge

    (tmp_path / "preds").mkdir()
    turns = judged_turns(EXAMPLES, limit=99)
    for name in ("base", "tuned"):
        (tmp_path / "preds" / f"{name}.jsonl").write_text(
            "".join(json.dumps({"id": t["id"], "output": "hello"}) + "\n" for t in turns))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EXAMPLES))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["score"]["judge_max"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    argv = [str(tmp_path / "test.jsonl"), str(tmp_path / "preds"), str(tiny_base_dir), str(tmp_path / "judge.json"),
            "--cache", str(tmp_path / "cache"), "--params", str(tmp_path / "params.yaml")]
    judge.main(argv + (["--dry-run"] if dry_run else []))
    if dry_run:
        assert not (tmp_path / "judge.json").exists() and "16" in capsys.readouterr().out
        return
    out = json.loads((tmp_path / "judge.json").read_text())
    assert out["tuned"]["relevance_judged"] == 4 and out["judge"]["judge_prompts"] == 16 and out["judge"]["judge_requests"] == 8   # base and tuned said the same
    assert out["judge"]["judge_invalid"] == 0                   # constrained decoding: always a label
    judge.main(argv)                                            # warm: everything from the cache
    assert json.loads((tmp_path / "judge.json").read_text())["judge"]["judge_sent"] == 0
