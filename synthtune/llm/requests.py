"""What is asked of a model and what comes back, and the content address of a request.

`request_key` names teacher answers in persisted caches (data/teacher_cache/<source>/responses.sqlite):
its bytes must never change for an existing request, or every cache goes cold. Bump KEY_VERSION
only on purpose.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

KEY_VERSION = 1


@dataclass
class ChatRequest:
    """One chat completion. `sample` tells apart repeated draws of the same prompt; `meta` is for
    the generator's `offline` function only (not sent, not part of the cache key)."""
    messages: list[dict]
    temperature: float | None = None        # None: teacher.temperature
    max_tokens: int | None = None           # None: teacher.max_tokens
    top_p: float | None = None              # None: teacher.top_p
    seed: int | None = None                 # sent to the server (vLLM, OpenAI honour it)
    sample: int = 0
    json: bool = False                      # the answer must be a JSON object (parsed into .data)
    meta: dict = field(default_factory=dict)


@dataclass
class ChatResponse:
    text: str | None
    ok: bool = True
    error: str | None = None                # why it was quarantined (ok=False)
    data: Any = None                        # the parsed JSON object of a json request
    cached: bool = False
    repaired: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0                   # paid in this run (0 for cache hits)


@dataclass
class Call:
    """A resolved request, exactly what a backend sends, and its cache key.

    `top_p` None is not sent (predict's greedy requests); `stop` is sent only when set. The teacher
    always resolves top_p and never sets stop, which keeps its keys what they always were.
    """
    messages: list[dict]
    temperature: float
    max_tokens: int
    top_p: float | None
    seed: int | None
    sample: int
    json: bool
    key: str = ""
    stop: list[str] | None = None


def request_key(backend: str, model: str, call: Call) -> str:
    """sha256 of what determines an answer; the endpoint and the key are deliberately not in it."""
    shape = {"v": KEY_VERSION, "backend": backend, "model": model, "messages": call.messages,
             "temperature": call.temperature, "top_p": call.top_p, "max_tokens": call.max_tokens,
             "seed": call.seed, "json": call.json, "sample": call.sample}
    if call.stop is not None:           # only when set: keys of requests without stop strings stay unchanged
        shape["stop"] = call.stop
    blob = json.dumps(shape, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def parse_json_answer(text: str | None) -> tuple[Any, str | None]:
    """(object, None) or (None, reason). Code fences around the object are tolerated."""
    if not text or not text.strip():
        return None, "empty answer"
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.S)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(data, dict):
        return None, f"expected a JSON object, got {type(data).__name__}"
    return data, None


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the first occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]
