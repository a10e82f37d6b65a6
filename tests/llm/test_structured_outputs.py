"""Structured outputs through the openai backend: json_schema per request kind, json_object where refused,
schema violations treated like malformed JSON, and the schema in the cache key only when set."""
from __future__ import annotations

import json

from synthtune.core.config import TeacherParams
from synthtune.llm.requests import Call, parse_json_answer, request_key
from synthtune.llm.teacher import ChatRequest, Teacher
from tests.llm.teacher_server import TeacherServer

SCHEMA = {"type": "object", "properties": {"text": {"type": "string", "minLength": 1}}, "required": ["text"],
          "additionalProperties": False}


def _params(server, **kw) -> TeacherParams:
    return TeacherParams(backend="openai", base_url=server.base_url, api_key_env=None, backoff_s=0.0, **kw)


def test_schema_requests_send_json_schema_and_validate_answers(tmp_path):
    with TeacherServer(responder=lambda body: json.dumps({"text": "hello"})) as server:
        with Teacher(_params(server), cache_dir=tmp_path) as teacher:
            out = teacher.complete([ChatRequest(messages=[{"role": "user", "content": "hi"}], schema=SCHEMA)])
        sent = server.log[0]["body"]["response_format"]
    assert out[0].ok and out[0].data == {"text": "hello"}
    assert sent == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}


def test_a_server_refusing_json_schema_gets_json_object_from_then_on(tmp_path):
    def responder(body):
        return json.dumps({"text": "ok"})

    with TeacherServer(responder=responder, reject=lambda body: (body.get("response_format") or {}).get("type")
                       == "json_schema") as server:
        with Teacher(_params(server, concurrency=1), cache_dir=tmp_path) as teacher:
            out = teacher.complete([ChatRequest(messages=[{"role": "user", "content": f"q{i}"}], schema=SCHEMA)
                                    for i in range(3)])
        kinds = [e["body"]["response_format"]["type"] for e in server.log]
    assert [r.data for r in out] == [{"text": "ok"}] * 3
    assert kinds == ["json_schema", "json_object", "json_object", "json_object"]   # refused once, then never asked


def test_an_answer_outside_the_schema_is_repaired_then_quarantined(tmp_path):
    with TeacherServer(responder=lambda body: json.dumps({"text": {"type": "json", "data": {}}})) as server:
        with Teacher(_params(server), cache_dir=tmp_path) as teacher:
            out = teacher.complete([ChatRequest(messages=[{"role": "user", "content": "hi"}], schema=SCHEMA)])
    assert not out[0].ok and out[0].repaired
    assert "does not match the schema at text" in out[0].error


def test_schema_enters_the_cache_key_only_when_set():
    plain = Call(messages=[{"role": "user", "content": "x"}], temperature=0.0, max_tokens=5, top_p=1.0, seed=None,
                 sample=0, json=True)
    keyed = Call(**{**vars(plain), "schema": SCHEMA})
    # the bytes of an existing key never change: this one was computed before schemas existed
    assert request_key("openai", "m", plain) == request_key("openai", "m", Call(**vars(plain)))
    assert request_key("openai", "m", keyed) != request_key("openai", "m", plain)
    assert parse_json_answer('{"text": ""}', SCHEMA)[1].startswith("does not match the schema at text")
