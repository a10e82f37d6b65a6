"""The teacher's output is a function of the params and the cache, never of which transient faults happened.

One batch runs twice on fresh caches against a seeded fault-injecting OpenAI-compatible server on
loopback (tests/llm/teacher_server.py): once fault-free, once with 40% of all responses faulted
(429, 500, dropped connections, hangs past the timeout, garbled and truncated bodies, and
transient garbled JSON completions). The "model" answers deterministically by the content of the
request, and some of its JSON answers are malformed every time (some of them again after the
repair), so the repair and quarantine paths run in both runs. Every response's fields, serialized,
must be the same bytes, and so must the two caches.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3

from synthtune.core.config import TeacherParams
from synthtune.llm.teacher import ChatRequest, Teacher
from tests.llm.teacher_server import FAULTS, TeacherServer

KINDS = (*FAULTS, "bad_json")


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def model(body: dict) -> str:
    """Deterministic by content. About 1 in 6 JSON questions gets malformed JSON every time; of
    those, every other one is malformed again after the repair (quarantined)."""
    messages = body["messages"]
    question = int(hashlib.sha256(messages[0]["content"].encode()).hexdigest()[:8], 16)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:12]
    if (body.get("response_format") or {}).get("type") != "json_object":
        return f"plain answer {digest}: {messages[-1]['content'][:40]}"
    repair = messages[-1]["content"].startswith("Your previous answer was not valid JSON")
    if question % 6 == 0 and (not repair or question % 12 == 0):
        return f"Sure! {{'id': '{digest}', 'note': unquoted"
    return json.dumps({"id": digest, "repaired": repair, "about": messages[0]["content"][-12:]})


def batch() -> list[ChatRequest]:
    questions = [ChatRequest(messages=[{"role": "system", "content": f"Reply with JSON about passage {i}."},
                                       {"role": "user", "content": f"Write a question about passage {i}."}],
                             json=True, temperature=0.0, seed=7) for i in range(130)]
    plain = [ChatRequest(messages=[{"role": "user", "content": f"Answer question {i} in a sentence."}])
             for i in range(30)]
    return questions + plain + questions[:6] + plain[:4]            # duplicates are asked once


def run(tmp_path, name: str, **faults) -> tuple[bytes, list, TeacherServer, Teacher]:
    with TeacherServer(responder=model, seed=3, hang_s=1.2, **faults) as server:
        params = TeacherParams(backend="openai", model="test-model", base_url=server.base_url, api_key_env=None,
                               concurrency=8, timeout_s=0.6, max_retries=12, backoff_s=0.01, max_backoff_s=0.05)
        with Teacher(params, cache_dir=tmp_path / name, sleep=Sleeps()) as teacher:
            out = teacher.complete(batch())
    blob = json.dumps([dataclasses.asdict(r) for r in out], sort_keys=True, ensure_ascii=False).encode()
    db = sqlite3.connect(tmp_path / name / "responses.sqlite")
    rows = db.execute("SELECT key, value FROM responses ORDER BY key").fetchall()
    db.close()
    return blob, rows, server, teacher


def test_output_bytes_identical_at_40_percent_faults(tmp_path):
    clean, clean_rows, clean_server, clean_teacher = run(tmp_path, "clean")
    faulty, faulty_rows, server, teacher = run(tmp_path, "faulty", fault_rate=0.4, faults=KINDS)
    assert sum(clean_server.faults.values()) == 0
    assert len(batch()) == 170 and clean_teacher.stats.requests - clean_teacher.stats.repaired == 160
    # the repair and quarantine paths ran, on the model's own (deterministic) malformed answers
    assert clean_teacher.stats.repaired >= 15 and clean_teacher.stats.quarantined >= 5
    assert sum(server.faults.values()) >= 0.3 * server.requests, server.faults
    assert all(server.faults[kind] > 0 for kind in KINDS), server.faults
    assert teacher.stats.retries > 0.3 * clean_teacher.stats.sent
    assert faulty == clean
    assert faulty_rows == clean_rows            # no garbled body or glitch was cached as an answer
