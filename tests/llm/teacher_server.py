"""A real OpenAI-compatible HTTP server on loopback, with injected latency and faults.

Reusable by any test or bench that needs a teacher endpoint:

    with TeacherServer(latency_s=0.1, fault_rate=0.3, api_key="sk-test") as server:
        params = TeacherParams(backend="openai", base_url=server.base_url, ...)
        ...
        server.requests            # HTTP requests to /v1/chat/completions (faulted ones included)
        server.answered            # requests answered 200 with a completion
        server.faults              # Counter of injected faults by kind
        server.max_in_flight       # most requests handled at the same time
        server.log                 # [{"path", "headers", "body"}], every request as received

Answers are a pure function of the request (`responder(body) -> str`), so a run with faults
must return exactly what a fault-free run returns. Faults, drawn with `fault_rate` from `faults`,
or forced in order with `server.plan([...])`. A drawn fault is a function of `seed`, the request
body and how many times that same body arrived before (not of the arrival order across
requests), so a faulted run is reproducible at any concurrency:
    "429"       429 with Retry-After (and retry-after-ms when set)
    "500"       500 with an error body
    "hang"      no answer for `hang_s` seconds, then the connection is closed
    "reset"     the connection is closed without an answer
    "garbage"   200 with a body that is not JSON
    "truncated" 200 announcing the whole body, half of it sent, then the connection closed
    "bad_json"  (opt-in, not in FAULTS) a transient model-level glitch: 200 with a valid envelope
                whose completion is the real answer cut short plus random line noise; random, so
                it never repeats itself, like a real glitch. JSON answers only: a glitch in a
                plain-text answer is undetectable by any client, so those get "garbage" instead.
The deterministic model-level fault: "[[bad-json]]" in the last user message makes the answer
malformed JSON (`BAD_JSON`, every time), "[[always-bad-json]]" anywhere in the conversation does
for every answer, repairs included.
`api_key` set: other keys get 401. `models` set: other models get 404. `reject(body)` true: 400.

Standalone (for benches in another process): `python tests/llm/teacher_server.py --latency 0.1`
prints `READY <base_url>`; GET /stats gives the counters, POST /reset clears them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "500", "hang", "reset", "garbage", "truncated")
BAD_JSON = "{'answer': unquoted, "


def default_responder(body: dict) -> str:
    """Deterministic: a hash of the conversation, echoing the last user message (as every property
    of a json_schema response format)."""
    messages = body.get("messages") or []
    last = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:10]
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":      # a server with structured outputs: an object of that schema
        props = fmt["json_schema"]["schema"].get("properties", {})
        return json.dumps({name: spec["enum"][0] if "enum" in spec else
                           f"{digest} {last[:200]}"[:spec.get("maxLength", 220)] for name, spec in props.items()})
    if fmt.get("type") == "json_object" or "json" in last.lower():
        return json.dumps({"id": digest, "echo": last[:200]})
    return f"answer {digest}: {' '.join(last.split()[:12])}"


class TeacherServer:
    def __init__(self, *, latency_s: float = 0.0, fault_rate: float = 0.0, faults: tuple[str, ...] = FAULTS,
                 seed: int = 0, retry_after: str | None = "0", retry_after_ms: int | None = None,
                 hang_s: float = 5.0, api_key: str | None = None, models: set[str] | None = None,
                 responder: Callable[[dict], str] = default_responder, host: str = "127.0.0.1", port: int = 0,
                 reject: Callable[[dict], bool] | None = None):
        self.latency_s, self.fault_rate, self.fault_kinds = latency_s, fault_rate, tuple(faults)
        self.retry_after, self.retry_after_ms, self.hang_s = retry_after, retry_after_ms, hang_s
        self.api_key, self.models, self.responder = api_key, models, responder
        self.reject = reject                    # reject(body) true: HTTP 400 (e.g. a server without json_schema)
        self.host, self.port = host, port
        self.seed = seed
        self._seen: Counter = Counter()        # arrivals per request body: the n-th try of a request
        self._lock = threading.Lock()
        self._planned: list[str | None] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    # -- control ------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> TeacherServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = _Server((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> TeacherServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def plan(self, faults: list[str | None]) -> None:
        """Force these faults (None: a normal answer) on the next requests, in order."""
        with self._lock:
            self._planned.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.answered = 0
            self.in_flight = 0
            self.max_in_flight = 0
            self.faults: Counter = Counter()
            self.log: list[dict] = []
            self._seen = Counter()

    def stats(self) -> dict:
        return {"requests": self.requests, "answered": self.answered, "faults": dict(self.faults),
                "max_in_flight": self.max_in_flight}

    def _next_fault(self, raw: bytes) -> tuple[str | None, random.Random]:
        """The fault for this arrival and an rng for its details, drawn from (seed, body, n-th arrival)."""
        with self._lock:
            self.requests += 1
            digest = hashlib.sha256(raw).hexdigest()
            rng = random.Random(f"{self.seed}:{digest}:{self._seen[digest]}")
            self._seen[digest] += 1
            if self._planned:
                fault = self._planned.pop(0)
            elif self.fault_rate and rng.random() < self.fault_rate:
                fault = rng.choice(self.fault_kinds)
            else:
                fault = None
            if fault:
                self.faults[fault] += 1
            return fault, rng


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def handle_error(self, request, client_address):   # clients that hang up mid-answer are expected
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"          # keep-alive, like real servers
    disable_nagle_algorithm = True         # else headers + body in two writes wait on delayed ACKs (40 ms)
    server_state: TeacherServer

    def log_message(self, *args):
        pass

    def _send(self, status: int, payload: bytes | dict, headers: dict | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, code: str, headers: dict | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": "error", "code": code}}, headers)

    def do_GET(self):
        state = self.server_state
        if self.path.rstrip("/").endswith("/stats"):
            self._send(200, state.stats())
        elif self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in sorted(state.models or [])]})
        else:
            self._error(404, "not found", "not_found")

    def do_POST(self):
        state = self.server_state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/").endswith("/reset"):
            state.reset()
            return self._send(200, {"ok": True})
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._error(404, f"unknown path {self.path}", "not_found")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return self._error(400, "request body is not JSON", "bad_request")
        fault, rng = state._next_fault(raw)
        with state._lock:
            state.log.append({"path": self.path, "headers": dict(self.headers), "body": body})
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            return self._answer(state, raw, body, fault, rng)
        finally:
            with state._lock:
                state.in_flight -= 1

    def _answer(self, state: TeacherServer, raw: bytes, body: dict, fault: str | None, rng: random.Random):
        if state.latency_s:
            time.sleep(state.latency_s)
        if state.api_key is not None and self.headers.get("Authorization") != f"Bearer {state.api_key}":
            return self._error(401, "Incorrect API key provided.", "invalid_api_key")
        if state.models is not None and body.get("model") not in state.models:
            return self._error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
        if state.reject is not None and state.reject(body):
            return self._error(400, "Invalid parameter: response_format.", "invalid_request_error")
        if fault == "429":
            headers = {"Retry-After": state.retry_after} if state.retry_after is not None else {}
            if state.retry_after_ms is not None:
                headers["retry-after-ms"] = str(state.retry_after_ms)
            return self._error(429, "Rate limit reached.", "rate_limit_exceeded", headers)
        if fault == "500":
            return self._error(500, "The server had an error.", "server_error")
        if fault in ("hang", "reset"):
            if fault == "hang":
                time.sleep(state.hang_s)
            self.close_connection = True
            return None
        if fault == "garbage":
            return self._send(200, b'{"id": "chatcmpl-x", "choices": [ {"message": ')
        text = state.responder(body)
        last = next((m.get("content") or "" for m in reversed(body.get("messages") or [])
                     if m.get("role") == "user"), "")
        if "[[bad-json]]" in last or any(
                "[[always-bad-json]]" in (m.get("content") or "") for m in body.get("messages") or []):
            text = BAD_JSON
        if fault == "bad_json":
            if _is_json_object(text):
                text = f"{text[:rng.randrange(1, len(text))]}\x00<noise {rng.getrandbits(64):016x}>"
            else:       # a plain-text answer: a garbled body instead (counted as what it is)
                with state._lock:
                    state.faults["bad_json"] -= 1
                    state.faults["garbage"] += 1
                return self._send(200, b'{"id": "chatcmpl-x", "choices": [ {"message": ')
        if fault == "truncated":
            body_bytes = json.dumps(_completion(raw, body, text)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body_bytes)))
            self.end_headers()
            self.wfile.write(body_bytes[:len(body_bytes) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        with state._lock:
            state.answered += 1
        self._send(200, _completion(raw, body, text))


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _completion(raw: bytes, body: dict, text: str) -> dict:
    """An OpenAI chat.completion envelope around `text` (usage: words, deterministic)."""
    prompt_tokens = sum(len((m.get("content") or "").split()) + 3 for m in body.get("messages") or []) + 3
    return {"id": "chatcmpl-" + hashlib.sha1(raw).hexdigest()[:12], "object": "chat.completion",
            "created": 0, "model": body.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                      "total_tokens": prompt_tokens + len(text.split())}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang", type=float, default=5.0)
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    server = TeacherServer(latency_s=args.latency, fault_rate=args.fault_rate, faults=tuple(args.faults.split(",")),
                           seed=args.seed, hang_s=args.hang, api_key=args.api_key, port=args.port).start()
    print(f"READY {server.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
