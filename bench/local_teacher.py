"""The local teacher server with SmolLM2-135M-Instruct: concurrency speed-up and structured outputs.

1. Speed: the same 16 requests (greedy, 48 new tokens at most) sent at concurrency 1, 4 and 16 through
   the `openai` client; requests/s and completion tokens/s of each, and the ratio to concurrency 1
   (the server's single-stream speed). The server batches what arrives together, so the ratio is
   what batching buys.
2. Structured outputs: 4 recipe dialogues (3 user turns at most) voiced through `teacher: openai` with json_schema (the
   default) and with json_object only (`teacher.json_schema: false`), no re-asks: the share of turn
   answers that are usable (parse, follow the schema, keep the slot values).
3. Cache: the warm re-run of (2) sends 0 requests.

Run: python bench/local_teacher.py  (about 10 minutes on 2 cores) -> bench/results/local_teacher.json
"""
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthtune.core.config import SourceParams, TeacherParams  # noqa: E402
from synthtune.llm.backends.openai import Endpoint, OpenAIClient  # noqa: E402
from synthtune.llm.requests import Call  # noqa: E402
from synthtune.llm.server import LocalServer  # noqa: E402
from synthtune.llm.teacher import Teacher  # noqa: E402

NAME = "smollm2-135m-instruct"


def speed(base_url: str, concurrency: int, n: int = 16) -> dict:
    endpoint = Endpoint(base_url, NAME, None, concurrency, 600.0, 2, 0.5, 4.0)
    client = OpenAIClient(endpoint)
    calls = [Call(messages=[{"role": "user", "content": f"Describe dish number {i} of a menu in two sentences."}],
                  temperature=0.0, max_tokens=48, top_p=None, seed=None, sample=0, json=False) for i in range(n)]
    tokens = []

    async def one(call):
        tokens.append((await client.complete(call))["completion_tokens"])

    start = time.perf_counter()
    asyncio.run(client.for_each(calls, one))
    wall = time.perf_counter() - start
    return {"requests": n, "seconds": round(wall, 2), "requests_per_s": round(n / wall, 3),
            "completion_tokens_per_s": round(sum(tokens) / wall, 1)}


def usable_share(base_url: str, json_schema: bool, cache: Path) -> dict:
    from synthtune.generate.sources import generate_source

    params = TeacherParams(backend="openai", base_url=base_url, api_key_env=None, model=NAME, concurrency=16,
                           timeout_s=600, json_schema=json_schema)
    source = SourceParams(kind="dialogues", path="x", domain="recipe", n_dialogues=4, max_turns=3, reasks=0)
    start = time.perf_counter()
    with Teacher(params, cache_dir=cache) as teacher:
        out = generate_source("tod", source, ROOT / "data/seeds/recipes.json", 3, teacher=teacher)
        sent = teacher.stats.sent
    return {"json_schema": json_schema, "turns": sum(len(r["messages"]) for r in out.records),
            "usable_share": out.metrics["voiced_turn_rate"], "requests_sent": sent,
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    from synthtune.model.packaged import materialize_packaged

    work = Path(tempfile.mkdtemp(prefix="local-teacher-"))
    model = work / "smollm2"
    materialize_packaged(NAME, model)
    results: dict = {"model": NAME, "batch_size": 16}
    with LocalServer(str(model), name=NAME, batch_size=16) as server:
        runs = {c: speed(server.base_url, c) for c in (1, 4, 16)}
        for c, run in runs.items():
            run["speedup_over_concurrency_1"] = round(run["completion_tokens_per_s"]
                                                      / runs[1]["completion_tokens_per_s"], 2)
        results["speed"] = {str(c): r for c, r in runs.items()}
        results["structured"] = {
            "json_object": usable_share(server.base_url, False, work / "cache-object"),
            "json_schema": usable_share(server.base_url, True, work / "cache-schema")}
        results["warm_requests_sent"] = usable_share(server.base_url, True, work / "cache-schema")["requests_sent"]
    out = ROOT / "bench/results/local_teacher.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
