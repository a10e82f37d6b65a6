"""The one OpenAI-compatible client: POST /chat/completions with aiohttp, retries and backoff.

Used by the `openai` teacher and by predict's hosted models (`predict.openai`). One retry loop:
429 (honouring Retry-After / retry-after-ms), 408, 409, 5xx, timeouts, connection errors and
garbled or truncated bodies are retried with exponential backoff and full jitter, re-sending the
identical request; every attempt has a hard timeout. 401/403 and 404 stop the whole run (a wrong
key or model fails every request alike). Before the first request the endpoint's host (or the
proxy) gets one TCP connect with a short timeout: an endpoint nobody answers is reported at
once, not after every retry of every request.

A caller can say which answers look wrong (`complete(call, check=...)`: malformed JSON, empty).
Such an answer may be the model's own or a glitch on the way, so it is not taken on first sight:
the identical request is sent again (a retry like any other), and a suspect answer is returned
only once the same text came back twice, i.e. it is the model's deterministic answer. A glitch
never repeats itself, so it is never returned, cached or repaired as if the model had said it.

Neither the openai SDK nor httpx: measured on this 2-core machine at concurrency 32 with
100 ms server latency, the SDK spends ~5 ms of CPU per request (request transformation,
response models) and httpx's async pool ~8 ms; aiohttp ~0.5 ms, which is what lets 32
requests in flight reach the server's rate (bench/teacher_throughput.py).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from synthtune.core.config import GenerationParams, OpenAIModelParams, TeacherParams
from synthtune.core.errors import UserError
from synthtune.llm.errors import RequestFailed, TeacherAuthError, TeacherError, TeacherModelNotFound, TeacherUnreachable
from synthtune.llm.requests import Call, cut_at_stop, draw_seed

log = logging.getLogger(__name__)


PROBE_TIMEOUT_S = 10.0          # the reachability probe's connect limit (at most teacher.timeout_s)


def _why(exc: OSError) -> str:
    """A connect error in a few words (the errno's name is what a user can search for)."""
    import socket

    if isinstance(exc, socket.gaierror):
        return "host not found"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens"
    return f"connection failed ({type(exc).__name__}: {exc.strerror or exc})"


@dataclass(frozen=True)
class Endpoint:
    """Where requests go and how hard to try. `section` is the params section error messages name."""
    base_url: str | None
    model: str
    api_key_env: str | None             # None: no key (a local vLLM / Ollama server)
    concurrency: int
    timeout_s: float                    # hard limit per attempt
    max_retries: int
    backoff_s: float
    max_backoff_s: float
    json_mode: bool = False             # send response_format=json_object for JSON calls
    json_schema: bool = False           # ... json_schema for calls with a schema, while the server takes it
    section: str = "teacher"

    @classmethod
    def of_teacher(cls, params: TeacherParams) -> Endpoint:
        return cls(params.base_url, params.model, params.api_key_env, params.concurrency, params.timeout_s,
                   params.max_retries, params.backoff_s, params.max_backoff_s, params.json_mode,
                   params.json_schema)

    @classmethod
    def of_hosted(cls, name: str, params: OpenAIModelParams, *, max_retries: int = 2) -> Endpoint:
        # predict.openai has no retry settings: the openai SDK's defaults, which it used before
        return cls(params.base_url, params.model, params.api_key_env, params.max_concurrency, params.timeout_s,
                   max_retries, backoff_s=0.5, max_backoff_s=8.0, section=f"predict.openai.{name}")


@dataclass
class AttemptCounts:
    sent: int = 0               # HTTP attempts made
    retries: int = 0


@dataclass
class _Attempt:
    retryable: bool
    reason: str
    retry_after: float | None = None
    unreachable: bool = False


class _AttemptFailed(Exception):
    def __init__(self, attempt: _Attempt):
        super().__init__(attempt.reason)
        self.attempt = attempt


def retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class OpenAIClient:
    """Chat completions from one endpoint; one pooled aiohttp session from `open` to `close`.

    `counts` (anything with `sent` and `retries`) is incremented per attempt and per retry: the
    teacher passes its stats. `sleep` and `rng` are injectable so tests record backoffs instead of
    waiting them.
    """

    def __init__(self, endpoint: Endpoint, *, counts: Any = None, sleep: Callable[[float], Awaitable] | None = None,
                 rng: random.Random | None = None):
        self.endpoint = endpoint
        self.where = (endpoint.base_url or "https://api.openai.com/v1").rstrip("/")
        self.counts = counts if counts is not None else AttemptCounts()
        self._sleep = sleep if sleep is not None else asyncio.sleep
        self._rng = rng or random.Random()
        self.session = self.proxy = None
        self.reachable = False          # set by the first successful probe()
        self.schema_refused = False     # the server answered 400 to a json_schema response_format

    def api_key(self) -> str | None:
        """Read when the first request is sent, never stored beyond the session's headers, never logged."""
        name = self.endpoint.api_key_env
        if not name:
            return None
        key = os.environ.get(name)
        if not key:
            raise TeacherAuthError.at(f"{self.endpoint.section}.api_key_env", f"environment variable {name} is "
                                      f"not set (export it with the API key of {self.where})")
        return key

    async def open(self) -> None:
        import urllib.parse
        import urllib.request

        import aiohttp

        key = self.api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # The proxy from the environment (HTTPS_PROXY, NO_PROXY), looked up once: aiohttp's
        # trust_env does it (and a netrc lookup) in a thread for every request.
        url = urllib.parse.urlsplit(self.where)
        bypass = urllib.request.proxy_bypass(url.hostname or "")
        self.proxy = None if bypass else urllib.request.getproxies().get(url.scheme)
        # aiohttp's total timeout is a backstop; the hard limit per attempt is asyncio.timeout in send().
        self.session = aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(
                limit=self.endpoint.concurrency, ssl=None if url.scheme == "https" else False),
            timeout=aiohttp.ClientTimeout(total=self.endpoint.timeout_s + 5))

    async def probe(self) -> None:
        """One TCP connect to the endpoint (or its proxy), once per client: TeacherUnreachable at
        once when nothing answers there, instead of after every retry of every request. Only a
        connection that cannot be opened counts; an endpoint that accepts it but then answers
        badly gets the retries."""
        if self.reachable:
            return
        import urllib.parse

        target = urllib.parse.urlsplit(self.proxy or self.where)
        host = target.hostname or "localhost"
        setting = f"{self.endpoint.section}.base_url"
        try:
            port = target.port or (443 if target.scheme == "https" else 80)
        except ValueError:
            raise TeacherUnreachable.at(setting, f"cannot reach {self.where} (its port is not a number "
                                        f"from 1 to 65535)") from None
        via = " (the proxy)" if self.proxy else ""
        wait = min(self.endpoint.timeout_s, PROBE_TIMEOUT_S)
        try:
            async with asyncio.timeout(wait):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            reason = f"no TCP connection to {host}:{port}{via} within {wait:g}s"
        except OSError as exc:
            reason = f"{_why(exc)} at {host}:{port}{via}"
        else:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
            self.reachable = True
            return
        raise TeacherUnreachable.at(setting, f"cannot reach {self.where} ({reason})")

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    def body(self, call: Call) -> dict:
        """The JSON payload; optional fields only when set, so each caller's payload stays what it was."""
        body: dict[str, Any] = {"model": self.endpoint.model, "messages": call.messages,
                                "temperature": call.temperature}
        if call.top_p is not None:
            body["top_p"] = call.top_p
        body["max_tokens"] = call.max_tokens
        if call.seed is not None:
            # a seeded server (vLLM, OpenAI) returns the same draw for the same body: re-asks
            # (sample > 0) get a seed of their own; the first draw keeps the seed as given
            body["seed"] = call.seed if call.sample == 0 else draw_seed(call.seed, call.sample)
        if call.stop:
            body["stop"] = call.stop
        if call.json and self.endpoint.json_mode:
            body["response_format"] = {"type": "json_object"}
            if call.schema is not None and self.endpoint.json_schema and not self.schema_refused:
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "answer", "schema": call.schema, "strict": True}}
        return body

    async def send(self, call: Call) -> dict:
        """One attempt: the answer, or raises _AttemptFailed (retry or give up) or a TeacherError."""
        import aiohttp

        e = self.endpoint
        body = self.body(call)
        try:
            async with asyncio.timeout(e.timeout_s):
                async with self.session.post(self.where + "/chat/completions", json=body,
                                             proxy=self.proxy) as response:
                    status, headers = response.status, response.headers
                    content = await response.read()
        except TimeoutError:
            raise _AttemptFailed(_Attempt(True, f"timed out after {e.timeout_s:g}s")) from None
        except aiohttp.ClientConnectorError as exc:
            raise _AttemptFailed(_Attempt(True, f"connection failed ({type(exc.os_error).__name__})",
                                          unreachable=True)) from None
        except aiohttp.ClientError as exc:
            raise _AttemptFailed(_Attempt(True, f"connection error ({type(exc).__name__})")) from None
        if status in (401, 403):
            raise TeacherAuthError.at(f"{e.section}.api_key_env", f"{self.where} refused the key in "
                                      f"${e.api_key_env} (HTTP {status})")
        if status == 404:
            raise TeacherModelNotFound.at(f"{e.section}.model", f"{self.where} does not serve model "
                                          f"{e.model!r} (HTTP 404)")
        if status in (400, 422) and body.get("response_format", {}).get("type") == "json_schema":
            # A server without structured outputs (or with another dialect of them): from now on
            # json_object, and this request is re-sent at once (not a retry: nothing failed on the way).
            if not self.schema_refused:
                log.warning("%s: %s refused response_format json_schema (HTTP %d); sending json_object instead",
                            e.section, self.where, status)
            self.schema_refused = True
            self.counts.sent += 1
            return await self.send(call)
        if status != 200:
            retryable = status in (408, 409, 429) or status >= 500
            raise _AttemptFailed(_Attempt(retryable, f"HTTP {status}", retry_after(headers)))
        try:
            payload = json.loads(content)
            choice = payload["choices"][0]
            text = choice["message"]["content"]
            usage = payload.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _AttemptFailed(_Attempt(True, f"malformed response body ({type(exc).__name__})")) from None
        if text is not None and not isinstance(text, str):
            raise _AttemptFailed(_Attempt(True, "malformed response body (content is not a string)"))
        return {"text": text, "finish_reason": choice.get("finish_reason"), "model": payload.get("model"),
                "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens")}

    async def complete(self, call: Call, check: Callable[[str | None], str | None] | None = None,
                       discarded: Callable[[dict], bool] | None = None) -> dict:
        """The answer after up to `max_retries` retries; RequestFailed when this request cannot be
        answered, TeacherUnreachable when no attempt ever reached the server.

        `check(text)`: why an answer looks wrong, or None. A suspect answer is returned only when
        the same text has come back twice (see the module docstring); until then it is retried.
        `discarded(answer)` is told of each suspect answer not returned (it was paid for); False
        from it stops the retries (RequestFailed).
        """
        e = self.endpoint
        unreachable = True
        suspects: set[str | None] = set()
        for attempt in range(e.max_retries + 1):
            self.counts.sent += 1
            try:
                answer = await self.send(call)
            except _AttemptFailed as exc:
                info = exc.attempt
            else:
                why = check(answer["text"]) if check is not None else None
                if why is None or answer["text"] in suspects:
                    return answer
                suspects.add(answer["text"])
                # re-sent at once: the server answered, so there is no load or rate limit to back off from
                info = _Attempt(True, f"a bad answer that did not repeat ({why})", retry_after=0.0)
                if discarded is not None and not discarded(answer):
                    raise RequestFailed(f"{info.reason}; not re-sent (no budget left)")
            unreachable = unreachable and info.unreachable
            if not info.retryable:
                raise RequestFailed(info.reason)
            if attempt == e.max_retries:
                break
            self.counts.retries += 1
            delay = info.retry_after if info.retry_after is not None else \
                self._rng.uniform(0, min(e.max_backoff_s, e.backoff_s * 2 ** attempt))
            log.debug("%s: %s; retry %d in %.2fs", e.section, info.reason, attempt + 1, delay)
            await self._sleep(min(delay, e.max_backoff_s))
        if unreachable:
            raise TeacherUnreachable.at(f"{e.section}.base_url", f"cannot reach {self.where} ({info.reason}, "
                                        f"{e.max_retries + 1} attempts)")
        raise RequestFailed(f"{info.reason} after {e.max_retries + 1} attempts")

    async def for_each(self, items: Sequence, job: Callable[[Any], Awaitable[bool | None]]) -> None:
        """Run `job(item)` over `items` with `concurrency` workers in one session.

        A job returning False stops every worker before its next item (the budget); an exception
        does too, and is raised once all workers have stopped.
        """
        await self.open()
        pending = iter(items)
        state: dict[str, Any] = {"stop": False, "error": None}

        async def worker() -> None:
            for item in pending:
                if state["stop"]:
                    return
                try:
                    go_on = await job(item)
                except Exception as exc:  # noqa: BLE001 - re-raised below, after the other workers stop
                    state["stop"], state["error"] = True, state["error"] or exc
                    return
                if go_on is False:
                    state["stop"] = True
                    return

        try:
            await self.probe()
            await asyncio.gather(*(worker() for _ in range(min(self.endpoint.concurrency, len(items)))))
        finally:
            await self.close()
        if state["error"] is not None:
            raise state["error"]


class OpenAIBackend:
    """Predict's hosted models: `generate(conversations, gen)` through OpenAIClient, order kept.

    Greedy unless `do_sample` (temperature 0, top_p not sent); at most 4 stop strings (the API's
    limit), and the answer is cut at the first of all of them. Any failure ends predict with one line.
    """

    def __init__(self, name: str, endpoint: OpenAIModelParams, seed: int = 0, *, max_retries: int = 2):
        self.name, self.seed = name, seed
        self.client = OpenAIClient(Endpoint.of_hosted(name, endpoint, max_retries=max_retries))
        try:
            self.client.api_key()           # a missing key fails before any model runs
        except TeacherError as exc:
            raise self._error(exc.detail) from None

    def _error(self, detail: str) -> UserError:
        return UserError(f"params.yaml: predict.openai.{self.name}: {detail}")

    def generate(self, conversations: Sequence[list[dict] | str], gen: GenerationParams) -> list[str]:
        calls = [Call(messages=[{"role": "user", "content": c}] if isinstance(c, str)
                      else [{"role": m["role"], "content": m["content"]} for m in c],
                      temperature=gen.temperature if gen.do_sample else 0.0, max_tokens=gen.max_new_tokens,
                      top_p=gen.top_p if gen.do_sample else None, seed=self.seed, sample=0, json=False,
                      stop=list(gen.stop)[:4] or None) for c in conversations]
        answers: list[str] = [""] * len(calls)

        async def answer(index: int) -> None:
            text = (await self.client.complete(calls[index]))["text"]
            answers[index] = cut_at_stop(text or "", gen.stop).strip()

        if calls:
            try:
                asyncio.run(self.client.for_each(range(len(calls)), answer))
            except TeacherError as exc:
                raise self._error(exc.detail) from None
            except RequestFailed as exc:
                raise self._error(f"{self.client.where}: {exc}") from None
        return answers

    def perplexity(self, examples: Sequence[dict]) -> dict | None:
        return None     # chat endpoints do not score given text
