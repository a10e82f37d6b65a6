"""An OpenAI-compatible chat server over a local transformers model, batching concurrent requests.

    python -m synthtune.llm.server --model models/teacher --name smollm2-135m-instruct --port 8008
    (or `make teacher-server`, which first builds models/teacher from the packaged SmolLM2 GGUF)

Then any OpenAI-compatible client, the `openai` teacher included (teacher.base_url:
http://127.0.0.1:8008/v1, teacher.api_key_env: null, teacher.model: the --name), talks to it.

Why the project's own server and not llama.cpp's: docs/architecture.md ("The local teacher
server"). In short: it decodes exactly as the `hf` teacher does (the same `LocalChatModel`, the
same weights and numerics, so `teacher: hf` and `teacher: openai` against this server give the
same greedy answers), it batches concurrent requests (one model step serves every active request,
so concurrency pays), and it needs no compiled extension.

* POST /v1/chat/completions: messages, temperature (OpenAI's default 1), top_p, max_tokens (or
  max_completion_tokens), seed, stop, response_format (`json_object`, or `json_schema`: decoding
  is constrained to the schema, synthtune.llm.backends.constrained). Unsupported requests
  (stream, n > 1, another model, a schema xgrammar cannot compile) get 400/404 with an OpenAI-style
  error body.
* GET /v1/models, GET /health, GET /stats (requests, batches, tokens, seconds busy).

Scheduling (`--scheduler`): `continuous` (the default) decodes one token per step for every active
request (synthtune.llm.backends.continuous): a request joins the running batch at the next step and
leaves it the step it ends, so the batch stays full under a stream of requests and nobody waits
for someone else's longer answer. `static`: the batcher takes what arrived within `--window-ms` of
the first, up to `--batch-size`, and runs them as one `generate` call (one per distinct top_p) to
the end of the longest answer (also the fallback for models whose KV cache the continuous
scheduler cannot splice, e.g. sliding-window layers). Either way the model works in a worker
thread, so the event loop keeps accepting requests; rows keep their own temperature, and greedy
rows give exactly their greedy answer whatever shares the batch (tested). A sampled row draws from
its own generator under `continuous` (seeded by its request's seed), from its batch's under `static`.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from synthtune.llm.requests import Call

log = logging.getLogger(__name__)


class BadRequest(Exception):
    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def call_of(body: dict, served: set[str]) -> Call:
    """A chat completion request body -> the Call LocalChatModel answers; BadRequest if unusable."""
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object")
    model = body.get("model")
    if model not in served:
        raise BadRequest(404, f"model {model!r} is not served here (served: {', '.join(sorted(served))})", "model")
    if body.get("stream"):
        raise BadRequest(400, "streaming is not supported", "stream")
    if body.get("n", 1) != 1:
        raise BadRequest(400, "n must be 1", "n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages):
        raise BadRequest(400, "messages must be a non-empty list of {role, content} with string content",
                         "messages")
    schema, wants_json = None, False
    fmt = body.get("response_format") or {"type": "text"}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise BadRequest(400, "response_format.json_schema.schema must be an object", "response_format")
        wants_json = True
    elif kind == "json_object":
        wants_json = True
    elif kind != "text":
        raise BadRequest(400, f"response_format type {kind!r} is not supported", "response_format")
    try:
        temperature = float(body.get("temperature", 1.0))
        top_p = float(body.get("top_p", 1.0))
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 256)
    except (TypeError, ValueError):
        raise BadRequest(400, "temperature, top_p and max_tokens must be numbers") from None
    if not (0 <= temperature <= 2 and 0 < top_p <= 1 and max_tokens >= 1):
        raise BadRequest(400, "temperature must be in [0, 2], top_p in (0, 1], max_tokens >= 1")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else (list(stop) if stop else None)
    seed = body.get("seed")
    return Call(messages=[{"role": m["role"], "content": m["content"]} for m in messages],
                temperature=temperature, max_tokens=max_tokens, top_p=top_p,
                seed=int(seed) if seed is not None else None, sample=0, json=wants_json, stop=stop, schema=schema)


@dataclass
class Stats:
    """Counters served at /stats. `batches`: prefills (static: `generate` calls); `batch_sizes`: how many
    model steps ran with how many rows (continuous: decode steps; static: one entry per `generate` call)."""
    scheduler: str = "continuous"
    requests: int = 0
    batches: int = 0
    rows: int = 0
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    busy_s: float = 0.0
    batch_sizes: dict = field(default_factory=dict)


class BatchingServer:
    """The queue, the batcher and the HTTP handlers around one LocalChatModel."""

    def __init__(self, model, names: Sequence[str], batch_size: int = 8, window_s: float = 0.02,
                 scheduler: str = "continuous"):
        self.model, self.names = model, set(names)
        self.batch_size, self.window_s = batch_size, window_s
        if scheduler == "continuous":
            from synthtune.llm.backends.continuous import supported

            if not supported(model.load()[0]):
                log.warning("this model's KV cache has layers the continuous scheduler cannot splice: static batches")
                scheduler = "static"
        self.scheduler = scheduler
        self.stats = Stats(scheduler=scheduler)
        self._queue: asyncio.Queue | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generate")

    # -- batching -------------------------------------------------------------------------------

    async def answer(self, call: Call) -> dict:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((call, future))
        return await future

    async def _gather(self, first, room: int) -> list:
        """`first` and whatever else arrives within the window, up to `room` requests in all."""
        loop = asyncio.get_running_loop()
        pending = [first]
        deadline = loop.time() + self.window_s
        while len(pending) < room:
            try:
                pending.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time())))
            except TimeoutError:
                break
        return pending

    async def continuous(self) -> None:
        """One decode step at a time for every active request; arrivals join between steps."""
        from synthtune.llm.backends.continuous import ContinuousDecoder

        loop = asyncio.get_running_loop()
        decoder, inflight = ContinuousDecoder(self.model, self.batch_size), []
        while True:
            arrivals = [] if decoder.rows else await self._gather(await self._queue.get(), decoder.free)
            while len(arrivals) < decoder.free and not self._queue.empty():
                arrivals.append(self._queue.get_nowait())
            finished: list = []
            work = [(call, lambda row, f=future: finished.append((f, row))) for call, future in arrivals]
            inflight = [f for f in inflight if not f.done()] + [f for _, f in arrivals]
            start = time.perf_counter()
            try:
                await loop.run_in_executor(self._worker, decoder.step, work)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the server goes on
                log.exception("generation failed")
                for future in inflight:
                    if not future.done():
                        future.set_exception(exc)
                decoder, inflight = ContinuousDecoder(self.model, self.batch_size), []
                continue
            s = self.stats
            s.busy_s += time.perf_counter() - start
            s.batches += bool(arrivals)
            s.steps, s.batch_sizes = decoder.steps, dict(decoder.step_rows)
            for future, row in finished:
                s.rows += 1
                s.prompt_tokens += row["prompt_tokens"]
                s.completion_tokens += row["completion_tokens"]
                if not future.done():
                    future.set_result(row)

    async def batcher(self) -> None:
        """Static batches: what arrived within the window, run to the end of the longest answer."""
        loop = asyncio.get_running_loop()
        while True:
            pending = await self._gather(await self._queue.get(), self.batch_size)
            # one generate call per top_p: rows keep their own temperature (hf.row_temperatures), and
            # greedy rows stay exactly greedy in a sampled batch
            groups: dict[tuple, list] = {}
            for call, future in pending:
                key = (None,) if call.temperature == 0 else (call.top_p,)
                groups.setdefault(key, []).append((call, future))
            if (None,) in groups and len(groups) > 1:       # greedy rows join the first sampled group
                greedy = groups.pop((None,))
                next(iter(groups.values())).extend(greedy)
            for group in groups.values():
                await self._run(loop, group)

    async def _run(self, loop, group: list) -> None:
        calls = [c for c, _ in group]
        start = time.perf_counter()
        try:
            rows = await loop.run_in_executor(self._worker, self.model.generate, calls)
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error, the server goes on
            log.exception("generation failed")
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        s = self.stats
        s.busy_s += time.perf_counter() - start
        s.batches += 1
        s.steps += 1
        s.rows += len(rows)
        s.batch_sizes[len(rows)] = s.batch_sizes.get(len(rows), 0) + 1
        for (_, future), row in zip(group, rows):
            s.prompt_tokens += row["prompt_tokens"]
            s.completion_tokens += row["completion_tokens"]
            if not future.done():
                future.set_result(row)

    # -- HTTP -----------------------------------------------------------------------------------

    def app(self):
        from aiohttp import web

        async def chat(request: web.Request) -> web.Response:
            self.stats.requests += 1
            try:
                try:
                    body = await request.json()
                except (ValueError, UnicodeDecodeError):
                    raise BadRequest(400, "the body is not JSON") from None
                call = call_of(body, self.names)
                if call.json:
                    try:
                        self.model.constraints().grammar(call.schema)
                    except (RuntimeError, ValueError) as exc:
                        raise BadRequest(400, f"cannot compile the JSON schema: {str(exc)[:200]}",
                                         "response_format") from None
            except BadRequest as exc:
                return web.json_response({"error": {"message": exc.message, "type": "invalid_request_error",
                                                    "param": exc.param}}, status=exc.status)
            row = await self.answer(call)
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
            return web.json_response({
                "id": f"chatcmpl-{digest}", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": row["finish_reason"],
                             "message": {"role": "assistant", "content": row["text"]}}],
                "usage": {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"],
                          "total_tokens": row["prompt_tokens"] + row["completion_tokens"]}})

        async def models(_request) -> web.Response:
            return web.json_response({"object": "list", "data": [
                {"id": name, "object": "model", "owned_by": "synthtune"} for name in sorted(self.names)]})

        async def health(_request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def stats(_request) -> web.Response:
            return web.json_response({**vars(self.stats),
                                      "batch_sizes": {str(k): v for k, v in self.stats.batch_sizes.items()}})

        async def start_batcher(app) -> None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self.continuous() if self.scheduler == "continuous" else self.batcher())

        async def stop_batcher(app) -> None:
            self._task.cancel()
            self._worker.shutdown(wait=False, cancel_futures=True)

        app = web.Application(client_max_size=16 * 2 ** 20)
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/v1/models", models)
        app.router.add_get("/health", health)
        app.router.add_get("/stats", stats)
        app.on_startup.append(start_batcher)
        app.on_cleanup.append(stop_batcher)
        return app


class LocalServer:
    """The server in a child process, for tests, benches and scripts:

        with LocalServer("models/teacher", name="smollm2-135m-instruct") as server:
            server.base_url          # http://127.0.0.1:<free port>/v1

    Waits for the READY line (a model that fails to load raises ServerFailed with the server's
    error line); stops the process on exit."""

    def __init__(self, model: str, name: str | None = None, batch_size: int = 8, window_ms: float = 20.0,
                 threads: int = 0, startup_timeout_s: float = 300.0, scheduler: str = "continuous"):
        self.args = ["--model", str(model), "--port", "0", "--batch-size", str(batch_size),
                     "--window-ms", str(window_ms), "--threads", str(threads),
                     "--scheduler", scheduler] + (["--name", name] if name else [])
        self.timeout = startup_timeout_s
        self.process = None
        self.base_url = None

    def __enter__(self) -> LocalServer:
        import subprocess
        import threading

        self.process = subprocess.Popen([sys.executable, "-m", "synthtune.llm.server", *self.args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.timeout)
        if not lines or not lines[0].startswith("READY "):
            self.process.kill()
            _, err = self.process.communicate()
            last = [line for line in err.splitlines() if line.strip()][-1:] or ["no READY line"]
            raise ServerFailed(f"the local teacher server did not start: {last[0]}")
        self.base_url = lines[0].split()[1]
        threading.Thread(target=self.process.stdout.read, daemon=True).start()    # keep the pipes drained
        threading.Thread(target=self.process.stderr.read, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:  # noqa: BLE001 - a server that ignores SIGTERM is killed
                self.process.kill()


class ServerFailed(RuntimeError):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthtune.llm.server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a transformers model folder (or hub id, offline: cached)")
    parser.add_argument("--name", help="the model name clients send (default: the --model value)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8008, help="0: any free port (printed)")
    parser.add_argument("--batch-size", type=int, default=8, help="most requests decoded together")
    parser.add_argument("--window-ms", type=float, default=20.0,
                        help="how long an idle server waits for more requests before it starts a batch")
    parser.add_argument("--scheduler", choices=("continuous", "static"), default="continuous",
                        help="continuous: requests join and leave the batch at every step; static: a batch runs "
                             "to its longest answer")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    import socket

    from aiohttp import web

    from synthtune.llm.backends.hf import LocalChatModel
    from synthtune.llm.errors import TeacherModelNotFound

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = LocalChatModel(args.model)
    try:
        model.load()            # a missing or broken model fails here, before anything listens
    except TeacherModelNotFound as exc:
        print(f"error: --model: {exc.detail.removeprefix('teacher.model: ')}", file=sys.stderr)
        return 2
    server = BatchingServer(model, {args.name or args.model, args.model}, args.batch_size, args.window_ms / 1000,
                            args.scheduler)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"error: --port: cannot listen on {args.host}:{args.port} ({exc.strerror})", file=sys.stderr)
        return 2
    sock.listen(128)            # connections made from now on wait in the backlog until the app runs
    host, port = sock.getsockname()[:2]
    print(f"READY http://{host}:{port}/v1 serving {args.name or args.model}", flush=True)
    web.run_app(server.app(), sock=sock, print=None, handle_signals=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
