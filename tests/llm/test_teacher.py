"""The teacher layer against a real OpenAI-compatible server on loopback (tests/llm/teacher_server.py).

No test asserts a wall-clock time: backoff sleeps are recorded through an injected `sleep`, and
the only real waits are a hang past a short timeout.
"""
from __future__ import annotations

import hashlib
import json
import logging
import socket
import sqlite3
import subprocess
import sys

import pytest
import yaml

from synthtune.core.config import TeacherParams, TeacherPrice
from synthtune.core.errors import ParamsError, UserError
from synthtune.llm.requests import Call as _Call
from synthtune.llm.requests import request_key
from synthtune.llm.teacher import (BudgetExceeded, ChatRequest, Teacher, TeacherAuthError, TeacherModelNotFound,
                                   TeacherUnreachable, TokenCounter, response_cache)
from synthtune.llm.tokens import TIKTOKEN_BLOBS, seed_tiktoken_cache
from tests.llm.teacher_server import BAD_JSON, TeacherServer

SECRET = "sk-test-0123456789abcdefSECRET"


@pytest.fixture
def server():
    with TeacherServer() as srv:
        yield srv


def params_for(server, **kw) -> TeacherParams:
    base = {"backend": "openai", "model": "test-model", "base_url": server.base_url, "api_key_env": None,
            "concurrency": 4, "timeout_s": 5.0, "max_retries": 4, "backoff_s": 0.01, "max_backoff_s": 0.05}
    base.update(kw)
    return TeacherParams(**base)


def requests(n: int, **kw) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": f"question number {i}"}], **kw) for i in range(n)]


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_cache_key_covers_what_shapes_an_answer_and_nothing_else():
    call = _Call(messages=[{"role": "user", "content": "hi"}], temperature=0.7, max_tokens=64, top_p=1.0,
                 seed=1, sample=0, json=False)
    key = request_key("openai", "m", call)
    assert key == request_key("openai", "m", _Call(**{**call.__dict__, "key": ""}))
    for change in ({"temperature": 0.0}, {"sample": 1}, {"max_tokens": 65}, {"seed": 2}, {"json": True},
                   {"messages": [{"role": "user", "content": "hi!"}]}):
        assert request_key("openai", "m", _Call(**{**call.__dict__, **change})) != key, change
    assert request_key("openai", "m2", call) != key and request_key("hf", "m", call) != key


def test_batch_in_order_concurrency_limit_and_warm_rerun_sends_nothing(tmp_path, server):
    server.latency_s = 0.02
    params = params_for(server, concurrency=3)
    with Teacher(params, cache_dir=tmp_path) as teacher:
        first = teacher.complete(requests(12) + requests(1))        # a duplicate is asked once
        cold = teacher.stats.metrics()
    assert server.requests == 12 and server.max_in_flight <= 3
    assert cold["teacher_sent"] == 12 and cold["teacher_seconds"] > 0          # the wall time of what was sent
    assert [r.text.split(": ", 1)[1] for r in first[:12]] == [f"question number {i}" for i in range(12)]
    assert first[12].text == first[0].text and all(r.ok and not r.cached for r in first)
    with Teacher(params, cache_dir=tmp_path) as teacher:
        again = teacher.complete(requests(12))
        assert teacher.stats.sent == 0 and teacher.stats.cache_hits == 12
        assert "teacher_seconds" not in teacher.stats.metrics()     # warm: the metrics of a template run
    assert server.requests == 12
    assert [r.text for r in again] == [r.text for r in first[:12]] and all(r.cached for r in again)


def test_retries_429_with_retry_after_5xx_hang_reset_and_garbage(tmp_path, server):
    server.retry_after, server.hang_s = "7", 3.0
    server.plan(["429", "500", "reset", "garbage", "hang", "500"])
    sleeps = Sleeps()
    params = params_for(server, concurrency=1, timeout_s=0.5, max_retries=8)
    with Teacher(params, cache_dir=tmp_path, sleep=sleeps) as teacher:
        out = teacher.complete(requests(2))
        assert teacher.stats.retries == 6 and teacher.stats.sent == 8
    assert all(r.ok for r in out) and server.answered == 2
    assert sleeps[0] == pytest.approx(0.05)                 # Retry-After 7 s, capped by max_backoff_s
    assert all(0 <= s <= 0.05 for s in sleeps[1:])          # exponential backoff with jitter, capped


def test_retry_after_ms_and_backoff_growth(tmp_path, server):
    server.retry_after, server.retry_after_ms = "9", 250
    server.plan(["429", "500", "500", "500"])
    sleeps = Sleeps()
    params = params_for(server, concurrency=1, max_retries=5, backoff_s=1.0, max_backoff_s=100.0)
    with Teacher(params, cache_dir=tmp_path, sleep=sleeps) as teacher:
        assert teacher.complete(requests(1))[0].ok
    assert sleeps[0] == pytest.approx(0.25)                 # retry-after-ms wins over Retry-After
    assert [s <= 2.0 ** k for k, s in enumerate(sleeps[1:], start=1)] == [True] * 3


def test_gives_up_quarantines_and_does_not_cache_the_failure(tmp_path, server):
    server.plan(["500"] * 3)
    params = params_for(server, concurrency=1, max_retries=2)
    with Teacher(params, cache_dir=tmp_path, sleep=Sleeps()) as teacher:
        out = teacher.complete(requests(2))
        assert teacher.stats.quarantined == 1
    assert not out[0].ok and out[0].error == "teacher: HTTP 500 after 3 attempts" and out[1].ok
    with Teacher(params, cache_dir=tmp_path) as teacher:
        again = teacher.complete(requests(2))
        assert teacher.stats.sent == 1 and again[0].ok          # the failed one is asked again


def test_malformed_json_gets_one_repair_then_quarantine(tmp_path, server):
    reqs = [ChatRequest(messages=[{"role": "user", "content": "give json [[bad-json]]"}], json=True),
            ChatRequest(messages=[{"role": "user", "content": "give json [[always-bad-json]]"}], json=True),
            ChatRequest(messages=[{"role": "user", "content": "give json"}], json=True)]
    with Teacher(params_for(server), cache_dir=tmp_path) as teacher:
        out = teacher.complete(reqs)
        assert teacher.stats.repaired == 2 and teacher.stats.quarantined == 1
    assert out[0].ok and out[0].repaired and isinstance(out[0].data, dict)
    assert not out[1].ok and out[1].error.startswith("malformed JSON after one repair: invalid JSON")
    assert out[2].ok and not out[2].repaired and out[2].data["echo"] == "give json"
    repair = server.log[-1]["body"] if "previous answer" in json.dumps(server.log[-1]["body"]) else server.log[3]["body"]
    assert repair["messages"][-2]["role"] == "assistant" and repair["response_format"] == {"type": "json_object"}
    sent = server.requests
    with Teacher(params_for(server), cache_dir=tmp_path) as teacher:
        again = teacher.complete(reqs)                          # the quarantine is reproduced from the cache
    assert server.requests == sent and [r.ok for r in again] == [True, False, True]


def test_unreachable_teacher_is_one_user_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                               # closed once the block ends: nothing listens
    params = TeacherParams(backend="openai", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=None,
                           max_retries=6, backoff_s=1.0)
    sleeps = Sleeps()
    with pytest.raises(TeacherUnreachable) as err, Teacher(params, sleep=sleeps) as teacher:
        teacher.complete(requests(3))
    assert isinstance(err.value, UserError)
    assert str(err.value) == (f"teacher.base_url: cannot reach http://127.0.0.1:{port}/v1 "
                              f"(connection refused: nothing listens at 127.0.0.1:{port})")
    # reported by the one probe before any request: no attempt was made, no backoff entered
    assert sleeps == [] and teacher.stats.sent == 0 and teacher.stats.retries == 0


def test_reachable_but_faulty_server_still_gets_the_retries(tmp_path, server):
    server.plan(["reset", "reset", "500"])          # accepts connections, then drops them
    sleeps = Sleeps()
    with Teacher(params_for(server, concurrency=1, max_retries=3), cache_dir=tmp_path, sleep=sleeps) as teacher:
        assert teacher.complete(requests(1))[0].ok
        assert teacher.stats.sent == 4 and teacher.stats.retries == 3 and len(sleeps) == 3


def test_a_glitched_json_answer_is_retried_the_model_s_own_is_confirmed_then_repaired(tmp_path, server):
    """A malformed answer is taken only when the identical request gets the same text again."""
    server.plan(["bad_json", "bad_json"])           # two different glitches, then the real answer
    reqs = [ChatRequest(messages=[{"role": "user", "content": "give json"}], json=True)]
    with Teacher(params_for(server, concurrency=1), cache_dir=tmp_path, sleep=Sleeps()) as teacher:
        out = teacher.complete(reqs)
        assert teacher.stats.sent == 3 and teacher.stats.repaired == 0
    assert out[0].ok and not out[0].repaired and out[0].data["echo"] == "give json"
    bodies = [entry["body"] for entry in server.log]
    assert bodies[0] == bodies[1] == bodies[2]                  # the identical request, re-sent
    stored = sqlite3.connect(tmp_path / "responses.sqlite").execute("SELECT value FROM responses").fetchall()
    assert [json.loads(v)["text"] for (v,) in stored] == [out[0].text]     # no glitch was cached

    server.reset()
    bad = [ChatRequest(messages=[{"role": "user", "content": "give json [[bad-json]]"}], json=True)]
    with Teacher(params_for(server, concurrency=1), cache_dir=tmp_path / "b", sleep=Sleeps()) as teacher:
        fixed = teacher.complete(bad)[0]
    assert fixed.ok and fixed.repaired
    first, again, repair = (entry["body"]["messages"] for entry in server.log)
    assert first == again and repair[:2] == [*first, {"role": "assistant", "content": BAD_JSON}]


def test_a_glitch_that_never_repeats_is_quarantined_not_cached(tmp_path, server):
    server.plan(["bad_json"] * 3)
    reqs = [ChatRequest(messages=[{"role": "user", "content": "give json"}], json=True)]
    with Teacher(params_for(server, concurrency=1, max_retries=2), cache_dir=tmp_path, sleep=Sleeps()) as teacher:
        out = teacher.complete(reqs)[0]
    assert not out.ok and out.error.startswith("teacher: a bad answer that did not repeat (invalid JSON")
    assert out.error.endswith("after 3 attempts")
    assert sqlite3.connect(tmp_path / "responses.sqlite").execute("SELECT COUNT(*) FROM responses").fetchone() == (0,)


def test_dry_run_counts_exactly_what_the_real_run_sends(tmp_path, server):
    """De-duplicated like the real run, cache hits excluded, and the repair of a cached malformed
    answer counted; compared with the requests reaching a counting server."""
    def ask(i: int, tag: str = "") -> ChatRequest:
        return ChatRequest(messages=[{"role": "user", "content": f"give json about item {i}{tag}"}], json=True)

    warm = [ask(i) for i in range(10)] + [ask(99, " [[bad-json]]")]
    with Teacher(params_for(server), cache_dir=tmp_path, sleep=Sleeps()) as teacher:
        assert all(r.ok for r in teacher.complete(warm))
        stale = teacher._resolve(ask(98))        # a cached malformed answer whose repair was never sent
    cache = response_cache(tmp_path)
    cache.put(stale.key, {"text": "not json {", "prompt_tokens": 3, "completion_tokens": 2})
    cache.close()
    fresh = [ask(i) for i in range(10, 30)]
    # 43 requests: 32 distinct and 2 repairs (item 99's cached, item 98's to send), 13 cache hits
    batch = warm + fresh + fresh[:8] + warm[:3] + [ask(98)]

    with Teacher(params_for(server), cache_dir=tmp_path, dry_run=True) as teacher:
        out = teacher.complete(batch, offline=lambda r: json.dumps({"offline": True}))
        dry, report = teacher.stats, teacher.dry_run_report()
    assert len(out) == len(batch) and all(r.ok for r in out)
    assert "34 requests (13 cached, 21 to send)" in report
    assert dry.to_send == 21 and len(report.splitlines()) == 21 + 1

    server.reset()
    with Teacher(params_for(server), cache_dir=tmp_path, sleep=Sleeps()) as teacher:
        real = teacher.complete(batch)
        assert teacher.stats.requests == dry.requests and teacher.stats.cache_hits == dry.cache_hits
    assert server.requests == dry.to_send and all(r.ok for r in real) and real[-1].repaired


def test_wrong_key_and_missing_key_and_unknown_model(monkeypatch, server, caplog):
    server.api_key, server.models = "sk-the-right-one", {"test-model"}
    monkeypatch.setenv("SYNTH_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TeacherAuthError) as err, Teacher(params_for(server, api_key_env="SYNTH_KEY")) as t:
        t.complete(requests(2))
    assert str(err.value) == f"teacher.api_key_env: {server.base_url} refused the key in $SYNTH_KEY (HTTP 401)"
    assert server.log[0]["headers"]["Authorization"] == f"Bearer {SECRET}"     # it was sent, and only there
    assert SECRET not in caplog.text and SECRET not in str(err.value)
    monkeypatch.delenv("SYNTH_KEY")
    with pytest.raises(TeacherAuthError, match="environment variable SYNTH_KEY is not set"), \
            Teacher(params_for(server, api_key_env="SYNTH_KEY")) as t:
        t.complete(requests(1))
    monkeypatch.setenv("SYNTH_KEY", "sk-the-right-one")
    with pytest.raises(TeacherModelNotFound, match=r"^teacher.model: .* does not serve model 'gpt-9' \(HTTP 404\)"), \
            Teacher(params_for(server, api_key_env="SYNTH_KEY", model="gpt-9")) as t:
        t.complete(requests(1))
    with Teacher(params_for(server, api_key_env="SYNTH_KEY")) as t:
        assert t.complete(requests(1))[0].ok


def test_key_pasted_into_params_is_refused_without_echo():
    with pytest.raises(ParamsError) as err:
        Teacher(TeacherParams(backend="openai", api_key_env=SECRET))
    assert SECRET not in str(err.value) and str(err.value).startswith("teacher.api_key_env: must name")


def test_secret_never_reaches_cache_or_logs(tmp_path, monkeypatch, server, caplog):
    server.api_key = SECRET
    monkeypatch.setenv("SYNTH_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    server.plan(["429", "500"])
    with Teacher(params_for(server, api_key_env="SYNTH_KEY"), cache_dir=tmp_path, sleep=Sleeps()) as t:
        assert all(r.ok for r in t.complete(requests(3)))
    blob = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert SECRET.encode() not in blob and SECRET not in caplog.text
    assert len(sqlite3.connect(tmp_path / "responses.sqlite").execute("SELECT * FROM responses").fetchall()) == 3


def test_budget_stops_before_crossing_and_keeps_what_was_done(tmp_path, server):
    price = {"test-model": TeacherPrice(input_per_mtok=1000.0, output_per_mtok=1000.0)}   # $0.001 per token
    reqs = requests(10, max_tokens=10)
    params = params_for(server, concurrency=2, prices=price, max_cost_usd=0.12)
    with pytest.raises(BudgetExceeded) as err, Teacher(params, cache_dir=tmp_path) as teacher:
        teacher.complete(reqs)
    assert teacher.stats.cost_usd <= 0.12 and 0 < server.answered < 10
    assert str(err.value).startswith("teacher.max_cost_usd: stopped before crossing $0.12")
    done = server.answered
    with Teacher(params_for(server, prices=price, max_cost_usd=10.0), cache_dir=tmp_path) as teacher:
        assert all(r.ok for r in teacher.complete(reqs))
        assert teacher.stats.cache_hits == done and teacher.stats.sent == 10 - done
    with pytest.raises(ParamsError, match="teacher.prices: no price for model 'test-model'"):
        Teacher(params_for(server, max_cost_usd=1.0))


def test_the_confirming_resend_is_paid_for_and_stays_within_the_budget(tmp_path, server):
    price = {"test-model": TeacherPrice(input_per_mtok=1000.0, output_per_mtok=1000.0)}   # $0.001 per token
    reqs = [ChatRequest(messages=[{"role": "user", "content": "give json [[bad-json]]"}], json=True, max_tokens=5)]
    # the worst case, 12 + 5 tokens, fits $0.02; the malformed answer costs 11, so a second one would cross it
    with pytest.raises(BudgetExceeded), \
            Teacher(params_for(server, prices=price, max_cost_usd=0.02), cache_dir=tmp_path) as teacher:
        teacher.complete(reqs)
    assert server.requests == 1 and teacher.stats.cost_usd == pytest.approx(0.011)
    with Teacher(params_for(server, prices=price, max_cost_usd=1.0), cache_dir=tmp_path) as teacher:
        out = teacher.complete(reqs)[0]             # nothing was cached: sent, confirmed, repaired
        assert out.repaired and server.requests == 1 + 3
        assert teacher.stats.cost_usd == pytest.approx(out.cost_usd + 0.011)    # the confirming copy is paid


def test_dry_run_sends_nothing_and_estimates(tmp_path, server):
    price = {"test-model": TeacherPrice(input_per_mtok=1.0, output_per_mtok=2.0)}
    with Teacher(params_for(server, prices=price), cache_dir=tmp_path) as teacher:
        first = teacher.complete(requests(2, max_tokens=100))
    with Teacher(params_for(server, prices=price), cache_dir=tmp_path, dry_run=True) as teacher:
        out = teacher.complete(requests(5, max_tokens=100), offline=lambda r: "an offline answer")
        report = teacher.dry_run_report()
    assert server.requests == 2
    assert [r.text for r in out] == [r.text for r in first] + ["an offline answer"] * 3
    assert "5 requests (2 cached, 3 to send)" in report and "question number 4" in report
    assert "prompt tokens 30 [cl100k_base]; completion tokens ~9 (at most 300)" in report
    assert "estimated cost $0.0000 (at most $0.0006)" in report
    with Teacher(params_for(server, prices=price), cache_dir=tmp_path / "none", dry_run=True) as teacher:
        teacher.complete(requests(2), offline=lambda r: "x")
        assert "2 requests (0 cached, 2 to send)" in teacher.dry_run_report()
    assert not (tmp_path / "none").exists()                     # a dry run creates no cache


def test_tiktoken_counts_offline_from_the_bundled_vocabularies(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    seed_tiktoken_cache()
    for name, url in TIKTOKEN_BLOBS.items():
        data = (tmp_path / hashlib.sha1(url.encode()).hexdigest()).read_bytes()
        assert len(data) > 1_000_000, name
    counter = TokenCounter("openai", "gpt-4o-mini")
    assert counter.name == "o200k_base" and counter.count("hello world") == 2
    assert TokenCounter("openai", "gpt-4").name == "cl100k_base"
    assert TokenCounter("openai", "some-local-llama").name == "cl100k_base"     # unknown: approximate


def test_hf_backend_batched_and_cached(tmp_path, tiny_model, tiny_tokenizer):
    tiny_model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    params = TeacherParams(backend="hf", model=str(tmp_path / "model"), batch_size=2, max_tokens=6, temperature=0.0)
    reqs = [ChatRequest(messages=[{"role": "user", "content": f"tell me about pasta {i}"}]) for i in range(3)]
    with Teacher(params, cache_dir=tmp_path / "cache") as teacher:
        first = teacher.complete(reqs)
        assert teacher.stats.sent == 3 and all(0 < r.completion_tokens <= 6 for r in first if r.ok)
    with Teacher(params, cache_dir=tmp_path / "cache") as teacher:
        again = teacher.complete(reqs)
        assert teacher.stats.sent == 0
    assert [r.text for r in again] == [r.text for r in first]


def test_generate_stage_prints_one_error_line_and_exits_2(tmp_path, root, server):
    server.models = {"test-model"}
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sources"] = {"qa": {"kind": "docqa", "path": "data/seeds/qa_docs", "teacher": "openai"}}
    params["teacher"].update({"base_url": server.base_url, "model": "nope", "api_key_env": None, "max_retries": 0})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "stages.generate", "qa", "data/seeds/qa_docs",
                             str(tmp_path / "raw.jsonl"), str(tmp_path / "rej.jsonl"), str(tmp_path / "m.json"),
                             "--params", str(tmp_path / "params.yaml"), "--teacher-cache", str(tmp_path / "c")],
                            cwd=root, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: teacher.model: {server.base_url} does not serve model 'nope' (HTTP 404)")
    assert "Traceback" not in result.stderr and not (tmp_path / "raw.jsonl").exists()


def test_reasks_of_a_seeded_request_send_seeds_of_their_own():
    """A seeded server returns the same draw for the same body: draw 0 keeps the seed as given (its
    cache keys and bodies stay what they were), re-asks 1 and 2 get distinct seeds; unseeded
    requests send none (the server's own randomness tells the draws apart)."""
    from synthtune.llm.backends.openai import Endpoint, OpenAIClient
    from synthtune.llm.requests import Call, draw_seed

    client = OpenAIClient(Endpoint("http://127.0.0.1:9/v1", "m", None, 1, 1.0, 0, 0.0, 0.0))

    def call(seed, sample):
        return Call(messages=[{"role": "user", "content": "hi"}], temperature=0.7, max_tokens=8, top_p=None,
                    seed=seed, sample=sample, json=False)

    seeds = [client.body(call(7, s))["seed"] for s in range(3)]
    assert seeds[0] == 7 and len(set(seeds)) == 3 and seeds[1:] == [draw_seed(7, 1), draw_seed(7, 2)]
    assert "seed" not in client.body(call(None, 2))
