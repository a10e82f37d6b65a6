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
    schema: dict | None = None              # the JSON schema of that object (structured outputs); implies json
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

    `top_p` None is not sent (predict's greedy requests); `stop` and `schema` are sent only when set.
    Both enter the cache key only when set, which keeps the keys of requests without them what they
    always were.
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
    schema: dict | None = None          # sent as response_format json_schema / constrains local decoding


def draw_seed(seed: int | None, sample: int) -> int:
    """The RNG seed of draw `sample` of a request seeded `seed`: distinct per draw, so a re-ask
    (sample 1, 2, ...) of a seeded request is a new draw, not the first one again."""
    return (seed or 0) * 1_000_003 + sample


def request_key(backend: str, model: str, call: Call) -> str:
    """sha256 of what determines an answer; the endpoint and the key are deliberately not in it."""
    shape = {"v": KEY_VERSION, "backend": backend, "model": model, "messages": call.messages,
             "temperature": call.temperature, "top_p": call.top_p, "max_tokens": call.max_tokens,
             "seed": call.seed, "json": call.json, "sample": call.sample}
    if call.stop is not None:           # only when set: keys of requests without stop strings stay unchanged
        shape["stop"] = call.stop
    if call.schema is not None:         # a schema changes what the model may say: part of the address
        shape["schema"] = call.schema
    blob = json.dumps(shape, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def parse_json_answer(text: str | None, schema: dict | None = None) -> tuple[Any, str | None]:
    """(object, None) or (None, reason). Code fences around the object are tolerated; with a
    `schema` the object must also validate against it (the first violation is the reason)."""
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
    if schema is not None:
        import jsonschema

        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(data))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "the object"
            return None, f"does not match the schema at {where}: {error.message[:120]}"
    return data, None


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the first occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]
