"""The project's own OpenAI-compatible server (synthtune.llm.server) and constrained JSON decoding.

Fast tests use the tiny model (any weights: the grammar, not the model, guarantees the JSON);
the slow ones serve the real SmolLM2-135M-Instruct and drive the generators through `teacher: openai`.
"""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from synthtune.core.config import SourceParams, TeacherParams
from synthtune.llm.backends.hf import LocalChatModel
from synthtune.llm.requests import Call
from synthtune.llm.server import BatchingServer, LocalServer, ServerFailed, call_of
from synthtune.llm.teacher import ChatRequest, Teacher, TeacherModelNotFound

LABEL = {"type": "object", "properties": {"label": {"type": "integer", "enum": [0, 1, 2]}},
         "required": ["label"], "additionalProperties": False}


def _post(base_url: str, body: dict) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(base_url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _call(content: str, **kw) -> Call:
    return Call(messages=[{"role": "user", "content": content}], temperature=kw.pop("temperature", 0.0),
                max_tokens=kw.pop("max_tokens", 12), top_p=1.0, seed=kw.pop("seed", None), sample=0,
                json=kw.pop("json", False), **kw)


def test_constrained_decoding_gives_schema_valid_json_even_from_random_weights(tiny_base_dir):
    model = LocalChatModel(str(tiny_base_dir))
    rows = model.generate([_call("rate it", json=True, schema=LABEL), _call("say anything"),
                           _call("rate that", json=True, schema=LABEL)])
    for row in (rows[0], rows[2]):
        assert json.loads(row["text"])["label"] in (0, 1, 2) and row["finish_reason"] == "stop"
    with pytest.raises(ValueError):
        json.loads(rows[1]["text"])         # the unconstrained row of the same batch: the tiny model's noise


def test_request_bodies_are_checked_like_an_openai_server():
    served = {"m"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 5,
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": LABEL}}}
    call = call_of(body, served)
    assert call.json and call.schema == LABEL and call.max_tokens == 5 and call.temperature == 0
    assert call_of({**body, "response_format": {"type": "json_object"}}, served).schema is None
    for bad, status in (({**body, "model": "x"}, 404), ({**body, "stream": True}, 400), ({**body, "n": 2}, 400),
                        ({**body, "messages": []}, 400), ({**body, "temperature": 5}, 400),
                        ({**body, "response_format": {"type": "xml"}}, 400)):
        with pytest.raises(Exception) as err:
            call_of(bad, served)
        assert err.value.status == status


@pytest.mark.parametrize("scheduler", ["continuous", "static"])
def test_concurrent_requests_share_batches_and_match_one_at_a_time(tiny_base_dir, scheduler):
    """Greedy answers do not depend on what else was in the batch; concurrency fills batches."""
    model = LocalChatModel(str(tiny_base_dir))
    prompts = [f"request number {i}" for i in range(6)]
    alone = [model.generate([_call(p)])[0]["text"] for p in prompts]
    server = BatchingServer(model, ["tiny"], batch_size=8, window_s=0.2, scheduler=scheduler)

    async def run():
        from aiohttp.test_utils import TestClient, TestServer

        async with TestClient(TestServer(server.app())) as client:
            async def one(p):
                response = await client.post("/v1/chat/completions", json={
                    "model": "tiny", "messages": [{"role": "user", "content": p}], "temperature": 0, "max_tokens": 12})
                return (await response.json())["choices"][0]["message"]["content"]
            return await asyncio.gather(*(one(p) for p in prompts))

    assert asyncio.run(run()) == alone
    assert server.stats.scheduler == scheduler and server.stats.rows == len(prompts)
    assert server.stats.batches < len(prompts) and max(server.stats.batch_sizes) > 1


def test_continuous_batching_admits_and_retires_rows_between_steps(tiny_base_dir):
    """A request that arrives while a long one decodes joins at the next step and leaves the step it ends,
    with exactly its one-at-a-time answer (greedy, JSON under its schema, cut at a stop string)."""
    from synthtune.llm.backends.continuous import ContinuousDecoder

    model = LocalChatModel(str(tiny_base_dir))
    long = _call("a long answer", max_tokens=40)
    later = [_call("a short one", max_tokens=3), _call("rate it", json=True, schema=LABEL, max_tokens=12),
             _call("stop early", max_tokens=30, stop=["e"])]
    alone = [model.generate([c])[0] for c in [long, *later]]
    decoder, done = ContinuousDecoder(model, max_rows=4), {}

    def sink(name):
        return lambda row: done.__setitem__(name, (decoder.steps, row))

    decoder.step([(long, sink("long"))])
    for _ in range(5):
        decoder.step()
    decoder.step([(c, sink(i)) for i, c in enumerate(later)])
    while decoder.rows:
        decoder.step()
    assert [done[k][1] for k in ("long", 0, 1, 2)] == alone
    assert alone[0]["completion_tokens"] == 40 and alone[1]["completion_tokens"] == 3
    assert done[0][0] < done["long"][0]           # the short request did not wait for the long one
    assert json.loads(done[1][1]["text"])["label"] in (0, 1, 2)
    assert max(decoder.step_rows) == 4 and decoder.step_rows.get(1, 0) > 0      # rows left as they ended
    assert decoder.cache is None and decoder.mask is None


def test_a_failed_decode_step_fails_its_requests_and_the_server_goes_on(tiny_base_dir, monkeypatch):
    from synthtune.llm.backends import continuous

    model = LocalChatModel(str(tiny_base_dir))
    expected = model.generate([_call("after the failure")])[0]["text"]
    real_step, calls = continuous.ContinuousDecoder.step, []

    def failing_once(self, arrivals=()):
        calls.append(len(arrivals))
        if len(calls) == 1:
            raise RuntimeError("out of memory (simulated)")
        return real_step(self, arrivals)

    monkeypatch.setattr(continuous.ContinuousDecoder, "step", failing_once)
    server = BatchingServer(model, ["tiny"], batch_size=4, window_s=0.01)

    async def run():
        from aiohttp.test_utils import TestClient, TestServer

        async with TestClient(TestServer(server.app())) as client:
            out = []
            for content in ("the failing one", "after the failure"):
                response = await client.post("/v1/chat/completions", json={
                    "model": "tiny", "messages": [{"role": "user", "content": content}], "temperature": 0,
                    "max_tokens": 12})
                out.append((response.status, await response.json() if response.status == 200 else None))
            return out

    (failed, _), (status, body) = asyncio.run(asyncio.wait_for(run(), 120))     # a dead batcher would hang
    assert failed == 500 and status == 200
    assert body["choices"][0]["message"]["content"] == expected and server.stats.rows == 1


def test_a_sampled_answer_does_not_depend_on_its_batch_under_continuous_batching(tiny_base_dir):
    from synthtune.llm.backends.continuous import ContinuousDecoder

    model = LocalChatModel(str(tiny_base_dir))
    hot = _call("hot", temperature=1.2, max_tokens=15, seed=3)

    def run(calls):
        decoder, out = ContinuousDecoder(model, max_rows=8), {}
        decoder.step([(c, lambda row, i=i: out.__setitem__(i, row["text"])) for i, c in enumerate(calls)])
        while decoder.rows:
            decoder.step()
        return out

    alone = run([hot])[0]
    assert run([_call("x", max_tokens=4), hot, _call("y", temperature=0.7, max_tokens=20)])[1] == alone
    assert run([Call(**{**vars(hot), "seed": 4})])[0] != alone          # the seed, not the batch, decides


def test_greedy_rows_stay_greedy_in_a_batch_with_sampled_rows(tiny_base_dir):
    """The server batches requests of different temperatures together; a greedy one must not notice."""
    model = LocalChatModel(str(tiny_base_dir))
    greedy = [_call(f"greedy {i}", max_tokens=10) for i in range(3)]
    alone = [model.generate([c])[0]["text"] for c in greedy]
    sampled = [_call(f"hot {i}", max_tokens=10, temperature=1.3) for i in range(3)]
    mixed = model.generate([sampled[0], greedy[0], sampled[1], greedy[1], greedy[2], sampled[2]])
    assert [mixed[1]["text"], mixed[3]["text"], mixed[4]["text"]] == alone
    assert [r["text"] for r in model.generate(sampled)] != [model.generate([c])[0]["text"] for c in greedy]


def test_server_with_a_missing_model_fails_in_one_line(tmp_path):
    with pytest.raises(ServerFailed) as err:
        with LocalServer(str(tmp_path / "no-model"), startup_timeout_s=120):
            pass
    message = str(err.value)
    assert message.startswith("the local teacher server did not start: error: --model: cannot load local model")
    assert message.endswith("no-model': no such folder, and not in the local hub cache")
    assert "\n" not in message


def test_a_wrong_model_name_is_one_teacher_error(tiny_base_dir, tmp_path):
    with LocalServer(str(tiny_base_dir), name="tiny") as server:
        params = TeacherParams(backend="openai", base_url=server.base_url, api_key_env=None, model="other",
                               max_retries=0)
        with Teacher(params, cache_dir=tmp_path / "c") as teacher:
            with pytest.raises(TeacherModelNotFound, match=r"teacher\.model: .* does not serve model 'other'"):
                teacher.complete([ChatRequest(messages=[{"role": "user", "content": "hi"}])])


# ---- slow: the real model --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    from synthtune.model.packaged import materialize_packaged

    out = tmp_path_factory.mktemp("teacher") / "smollm2"
    materialize_packaged("smollm2-135m-instruct", out)
    return out


@pytest.mark.slow
def test_real_model_behind_the_server_voices_dialogues_and_writes_docqa(smollm2, tmp_path, root):
    """`make teacher-server`'s server with SmolLM2, driven by the generators through `teacher: openai`;
    the `hf` teacher with the same model gives the same greedy answers."""
    from synthtune.generate.docqa import generate_docqa
    from synthtune.generate.sources import generate_source

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "light.md").write_text("# Beacon 900\n\nThe Beacon 900 front light is rated 900 lumens. On the high "
                                   "setting it runs for 3.5 hours; on the eco setting for 11 hours. Charge it "
                                   "over USB-C for 4 hours before the first ride. The mount fits bars from 22 "
                                   "to 35 mm.")
    with LocalServer(str(smollm2), name="smollm2-135m-instruct", batch_size=8) as server:
        params = TeacherParams(backend="openai", base_url=server.base_url, api_key_env=None,
                               model="smollm2-135m-instruct", concurrency=8, timeout_s=300, max_tokens=96)
        with Teacher(params, cache_dir=tmp_path / "tod") as teacher:
            source = SourceParams(kind="dialogues", path="x", domain="recipe", n_dialogues=2, max_turns=3, reasks=1)
            out = generate_source("tod", source, root / "data/seeds/recipes.json", 7, teacher=teacher)
            sent = teacher.stats.sent
        with Teacher(params, cache_dir=tmp_path / "qa") as teacher:
            qa = generate_docqa("qa", SourceParams(kind="docqa", path=str(docs), min_length_percentile=0.0),
                                docs, teacher, seed=1)
        greedy = [ChatRequest(messages=[{"role": "user", "content": "Name a fruit. Reply with JSON."}],
                              temperature=0.0, max_tokens=24, schema=LABEL)]
        with Teacher(params, cache_dir=tmp_path / "g") as teacher:
            over_http = teacher.complete(greedy)[0].text
    assert len(out.records) == 2 and out.rejects == [] and sent > 0
    assert out.metrics["voiced_turn_rate"] > 0 and out.metrics["voicing_fallbacks"] >= 0
    voiced = [m for r in out.records for m, f in zip(r["messages"], range(99))
              if f not in {x["turn"] for x in r["meta"]["voicing"]["fallbacks"]}]
    assert voiced and all(m["content"].strip() for m in voiced)
    assert qa.metrics["grounding_scored"] + sum(r["code"] != "ungrounded" for r in qa.rejects) >= 1
    assert all(r["code"] in {"ungrounded", "teacher_error", "teacher_unusable"} for r in qa.rejects)
    with Teacher(TeacherParams(backend="hf", model=str(smollm2)), cache_dir=tmp_path / "hf") as teacher:
        locally = teacher.complete(greedy)[0].text
    assert json.loads(over_http)["label"] in (0, 1, 2) and locally == over_http
