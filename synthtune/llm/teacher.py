"""The teacher: a batch of chat requests in, responses out, through one of three backends.

    teacher = open_teacher(params.teacher, backend=source.teacher, cache_dir=Path("data/teacher_cache/x"))
    responses = teacher.complete([ChatRequest(messages=[...], json=True)], offline=my_template_fn)

* `template` — offline and deterministic: the generator's own `offline(request) -> str` answers.
* `openai`  — any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama) through the one client
  (synthtune.llm.backends.openai): `teacher.concurrency` requests in flight, retries with backoff.
* `hf`      — a local transformers model, batched (`teacher.batch_size`, synthtune.llm.backends.hf).

This module is the orchestration: resolve requests, serve what the cache holds, keep the budget,
dry runs, repair. LLM answers go through a content-addressed SQLite cache (one file per source
folder, synthtune.llm.cache), keyed by backend, model, messages, sampling params and sample index
(synthtune.llm.requests.request_key), and written as each answer arrives: a crash loses only the
requests in flight, a warm re-run sends nothing. A JSON request whose answer does not parse gets
one repair request; if that fails too, the response is quarantined (`ok=False`, `error` says why)
and the run goes on.

Output is fault-invariant (the same params and cache give the same responses whatever transient
faults happen): a malformed or empty answer is taken (cached, repaired) only once the identical
request got the same text back twice, so a glitch on the way is retried like a 500 and never
mistaken for the model's answer, and the repair request is a function of the request and that
answer alone. A dry run counts exactly what a real run would send: the same de-duplication, the
same cache hits, and the repairs of cached malformed answers.

Costs are counted with tiktoken (the model's own tokenizer otherwise) and `teacher.prices`;
`teacher.max_cost_usd` stops before it is crossed (`BudgetExceeded`, what was done stays cached;
a malformed answer that was re-sent for confirmation is paid, and counted, twice). The API key is
read from the environment variable named by `teacher.api_key_env` when the first request is sent,
and never stored or logged.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from synthtune.core.config import TeacherParams
from synthtune.core.errors import ParamsError
from synthtune.llm.budget import Budget, TeacherStats, dry_run_report, estimate
from synthtune.llm.cache import JSON, KeyValueCache
from synthtune.llm.errors import (BudgetExceeded, RequestFailed, TeacherAuthError, TeacherError,
                                  TeacherModelNotFound, TeacherUnreachable)
from synthtune.llm.requests import KEY_VERSION, Call, ChatRequest, ChatResponse, parse_json_answer, request_key
from synthtune.llm.tokens import TIKTOKEN_BLOBS, TokenCounter, price_of, seed_tiktoken_cache

__all__ = ["Teacher", "open_teacher", "check_params", "response_cache", "ChatRequest", "ChatResponse", "Call",
           "TeacherError", "BudgetExceeded", "TeacherUnreachable", "TeacherAuthError", "TeacherModelNotFound",
           "parse_json_answer", "TokenCounter", "TeacherStats", "request_key", "KEY_VERSION", "TIKTOKEN_BLOBS",
           "seed_tiktoken_cache", "CACHE_FILE"]

log = logging.getLogger(__name__)

CACHE_FILE = "responses.sqlite"
REPAIR_PROMPT = ("Your previous answer was not valid JSON ({error}). Reply again with only the corrected "
                 "JSON object, nothing else.")


def response_cache(directory: str | os.PathLike, read_only: bool = False) -> KeyValueCache:
    """The teacher's answers in `<directory>/responses.sqlite`: table `responses (key, value TEXT)`
    of JSON objects, the layout of every cache persisted so far."""
    return KeyValueCache(Path(directory) / CACHE_FILE, table="responses", column="value", codec=JSON,
                         read_only=read_only, timeout_s=30.0, name="teacher")


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
        self._counter: TokenCounter | None = None
        if self.backend != "template":
            check_params(params)
        self.price = price_of(params, params.model) if self.backend != "template" else (0.0, 0.0)
        if params.max_cost_usd is not None and self.price is None:
            raise ParamsError(f"teacher.prices: no price for model {params.model!r}, so teacher.max_cost_usd "
                              f"cannot be enforced (add teacher.prices.{params.model})")
        self.price = self.price or (0.0, 0.0)
        self.budget = Budget(params.max_cost_usd, self.price, lambda: self.counter, self.stats)
        self.cache: KeyValueCache | None = None
        if cache_dir is not None and self.backend != "template":
            if not dry_run:
                self.cache = response_cache(cache_dir)
            elif (Path(cache_dir) / CACHE_FILE).exists():
                self.cache = response_cache(cache_dir, read_only=True)
        self._client = self._local = None
        if self.backend == "openai":
            from synthtune.llm.backends.openai import Endpoint, OpenAIClient

            self._client = OpenAIClient(Endpoint.of_teacher(params), counts=self.stats, sleep=sleep, rng=rng)
        elif self.backend == "hf":
            from synthtune.llm.backends.hf import LocalChatModel

            self._local = LocalChatModel(params.model)

    # -- public -------------------------------------------------------------------------------

    def complete(self, requests: Sequence[ChatRequest],
                 offline: Callable[[ChatRequest], str] | None = None) -> list[ChatResponse]:
        """Answers in the order of `requests`. `offline` answers for the template backend (and
        stands in for the teacher in a dry run, so later steps see plausible inputs)."""
        calls = [self._resolve(r) for r in requests]
        if (self.backend == "template" or self.dry_run) and offline is None:
            raise TeacherError(f"teacher.backend: this generator has no offline answers; "
                               f"{'a dry run' if self.dry_run else 'the template backend'} needs them")
        if self.backend == "template":
            return self._complete_template(requests, calls, offline)
        # A dry run goes through the same steps as a real run (de-duplication, cache hits, repairs
        # of cached malformed answers), with offline answers in place of what would be sent, so
        # it counts exactly the requests the real run sends.
        stand_in = {}       # key -> the request whose offline answer stands in for it (dry run)
        for request, call in zip(requests, calls):
            stand_in.setdefault(call.key, request)
        send = (lambda batch: self._estimate_all(batch, stand_in, offline)) if self.dry_run else self._send_all
        try:
            raw = send(calls)
            responses = [self._response(call, raw[call.key]) for call in calls]
            # A JSON answer that does not parse gets one repair request; a second failure is quarantined.
            # The answer got here only once the client saw the same text twice (a glitch on the way is
            # retried, never repaired), and the repair is a function of the request and that answer
            # alone, so the outcome does not depend on which transient faults happened.
            broken = [i for i, r in enumerate(responses) if calls[i].json and r.ok and r.data is None]
            repairs = [self._repair_call(calls[i], responses[i]) for i in broken]
            for i, repair in zip(broken, repairs):
                stand_in.setdefault(repair.key, requests[i])
            raw = send(repairs) if repairs else {}
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

    def count_tokens(self, text: str) -> int:
        return self.counter.count(text)

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = TokenCounter(self.backend, self.params.model, self.params.tokenizer)
        return self._counter

    def dry_run_report(self) -> str:
        return dry_run_report(self.stats, self.price, self.counter.name, self.params, self.backend, self.model)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests and answers -----------------------------------------------------------------

    def _resolve(self, r: ChatRequest) -> Call:
        p = self.params
        call = Call(messages=[{"role": m["role"], "content": m["content"]} for m in r.messages],
                    temperature=p.temperature if r.temperature is None else r.temperature,
                    max_tokens=p.max_tokens if r.max_tokens is None else r.max_tokens,
                    top_p=p.top_p if r.top_p is None else r.top_p, seed=r.seed, sample=r.sample,
                    json=r.json or r.schema is not None, schema=r.schema)
        call.key = request_key(self.backend, self.model, call)
        return call

    def _repair_call(self, call: Call, failed: ChatResponse) -> Call:
        fixed = Call(messages=[*call.messages, {"role": "assistant", "content": failed.text or ""},
                               {"role": "user", "content": REPAIR_PROMPT.format(error=failed.error)}],
                     temperature=0.0, max_tokens=call.max_tokens, top_p=1.0, seed=call.seed,
                     sample=call.sample, json=True, schema=call.schema)
        fixed.key = request_key(self.backend, self.model, fixed)
        return fixed

    def _response(self, call: Call, raw: dict) -> ChatResponse:
        if "error" in raw:
            return ChatResponse(text=None, ok=False, error=raw["error"])
        response = ChatResponse(text=raw["text"], cached=raw.get("cached", False),
                                prompt_tokens=raw.get("prompt_tokens") or 0,
                                completion_tokens=raw.get("completion_tokens") or 0,
                                cost_usd=raw.get("cost_usd", 0.0))
        if call.json:
            response.data, response.error = parse_json_answer(raw["text"], call.schema)
        elif not (raw["text"] or "").strip():
            response.ok, response.error = False, "empty answer"
        return response

    def _complete_template(self, requests, calls, offline) -> list[ChatResponse]:
        """The offline answers, one per request (its meta may matter to `offline`); the counts
        (and a dry run's estimate) are of distinct requests, as for an LLM backend."""
        texts = [offline(request) for request in requests]
        _, todo = self._pending(calls)
        if self.dry_run:
            first = {}
            for call, text in zip(calls, texts):
                first.setdefault(call.key, text)
            for call in todo:
                estimate(self.stats, self.counter, call, first[call.key])
        out = []
        for call, text in zip(calls, texts):
            response = ChatResponse(text=text)
            if call.json:
                response.data, response.error = parse_json_answer(text, call.schema)
                if response.data is None:
                    response.ok = False
                    self.stats.quarantined += 1
            out.append(response)
        return out

    def _estimate_all(self, calls: Sequence[Call], stand_in: dict[str, ChatRequest],
                      offline: Callable[[ChatRequest], str]) -> dict[str, dict]:
        """A dry run's `_send_all`: the same cache hits and de-duplication (`_pending`); what would
        be sent is estimated and answered offline."""
        done, todo = self._pending(calls)
        for call in todo:
            text = offline(stand_in[call.key])
            estimate(self.stats, self.counter, call, text)
            done[call.key] = {"text": text}
        return done

    # -- sending ------------------------------------------------------------------------------

    def _send_all(self, calls: Sequence[Call]) -> dict[str, dict]:
        """Raw answers by key: cache hits, then what the backend answers (each stored as it arrives)."""
        done, todo = self._pending(calls)
        if todo:
            start = time.monotonic()
            try:
                if self.backend == "hf":
                    self._send_hf(todo, done)
                else:
                    asyncio.run(self._send_openai(todo, done))
            finally:
                self.stats.seconds += time.monotonic() - start
        return done

    def _pending(self, calls: Sequence[Call]) -> tuple[dict[str, dict], list[Call]]:
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

    def _store(self, call: Call, answer: dict) -> dict:
        """Count and cache one fresh answer (committed before the next one arrives)."""
        cost = self._spend(call, answer)
        if self.cache is not None:
            self.cache.put(call.key, answer)
        return {**answer, "cost_usd": cost}

    def _spend(self, call: Call, answer: dict) -> float:
        """Fill in the token counts of one answer received, add them and its cost to the stats."""
        if answer.get("prompt_tokens") is None:
            answer["prompt_tokens"] = self.counter.count_messages(call.messages)
        if answer.get("completion_tokens") is None:
            answer["completion_tokens"] = self.counter.count(answer.get("text") or "")
        cost = self.budget.cost(answer["prompt_tokens"], answer["completion_tokens"])
        self.stats.prompt_tokens += answer["prompt_tokens"]
        self.stats.completion_tokens += answer["completion_tokens"]
        self.stats.cost_usd += cost
        return cost

    def _over_budget(self, done: dict, todo: Sequence[Call]) -> BudgetExceeded:
        finished = sum(c.key in done for c in todo)
        return self.budget.exceeded(len(done), len(done) + len(todo) - finished,
                                    self.cache.path if self.cache is not None else None)

    def _send_hf(self, todo: Sequence[Call], done: dict[str, dict]) -> None:
        # One sampling setting per batch (model.generate takes one), in request order within it.
        groups: dict[tuple, list[Call]] = {}
        for call in todo:
            groups.setdefault((call.temperature, call.top_p, call.seed, call.sample), []).append(call)
        for group in groups.values():
            for start in range(0, len(group), self.params.batch_size):
                batch = group[start:start + self.params.batch_size]
                if not all(self.budget.reserve(c) for c in batch):
                    raise self._over_budget(done, todo)
                for call, answer in zip(batch, self._local.generate(batch)):
                    self.stats.sent += 1
                    self.budget.release(call)
                    done[call.key] = self._store(call, answer)

    async def _send_openai(self, todo: Sequence[Call], done: dict[str, dict]) -> None:
        progress = _Progress(len(todo))
        over_budget = False

        async def answer(call: Call) -> bool:
            nonlocal over_budget
            if not self.budget.reserve(call):
                over_budget = True
                return False

            def discarded(suspect: dict) -> bool:
                # A suspect answer not taken (yet) was still paid for: it counts (stats and budget,
                # never the cache), and the confirming re-send goes out only while this call's
                # reservation, which now stands for the re-send, still fits under the limit.
                nonlocal over_budget
                self._spend(call, dict(suspect))
                over_budget = over_budget or not self.budget.fits()
                return not over_budget

            try:
                got = await self._client.complete(call, check=_check(call), discarded=discarded)
                done[call.key] = self._store(call, got)
            except RequestFailed as exc:
                done[call.key] = {"error": f"teacher: {exc}"}       # quarantined: never cached
            finally:
                self.budget.release(call)
            progress.step()
            return not over_budget

        await self._client.for_each(todo, answer)
        if over_budget:
            raise self._over_budget(done, todo)


def _check(call: Call) -> Callable[[str | None], str | None]:
    """Why an answer to `call` would be rejected (the client confirms such an answer before
    taking it): JSON that does not parse, or an empty text."""
    if call.json:
        return lambda text: parse_json_answer(text, call.schema)[1]
    return lambda text: None if (text or "").strip() else "empty answer"


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
