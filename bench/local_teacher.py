"""The local teacher server with SmolLM2-135M-Instruct: concurrency speed-up and structured outputs.

1. Speed: the same 16 requests (greedy, 48 new tokens at most) sent at concurrency 1, 4 and 16 through
   the `openai` client; requests/s and completion tokens/s of each, and the ratio to concurrency 1
   (the server's single-stream speed). The server batches what arrives together, so the ratio is
   what batching buys. Then a stream: 32 requests of mixed lengths (8 to 64 new tokens) at
   concurrency 8, as the generators send them (a new request as soon as one returns). Both under
   the default `--scheduler continuous` and under `static`: two servers, each scenario run on one then
   the other, twice, the best run of each kept (so machine load drifts hit both), and their ratio.
2. Structured outputs: 4 recipe dialogues (3 user turns at most) voiced through `teacher: openai` with json_schema (the
   default) and with json_object only (`teacher.json_schema: false`), no re-asks: the share of turn
   answers that are usable (parse, follow the schema, keep the slot values).
3. Cache: the warm re-run of (2) sends 0 requests.

Run: python bench/local_teacher.py  (about 15 minutes on 2 cores) -> bench/results/local_teacher.json
     python bench/local_teacher.py --speed-only   (part 1 only, about 8 minutes; keeps the file's other figures)
"""
import argparse
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


def speed(base_url: str, concurrency: int, n: int = 16, lengths: tuple[int, ...] = (48,)) -> dict:
    endpoint = Endpoint(base_url, NAME, None, concurrency, 600.0, 2, 0.5, 4.0)
    client = OpenAIClient(endpoint)
    calls = [Call(messages=[{"role": "user", "content": f"Describe dish number {i} of a menu in two sentences."}],
                  temperature=0.0, max_tokens=lengths[i % len(lengths)], top_p=None, seed=None, sample=0, json=False)
             for i in range(n)]
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


SCENARIOS = {"1": (1, 16, (48,)), "4": (4, 16, (48,)), "16": (16, 16, (48,)), "stream_8": (8, 32, (8, 64, 16, 32))}


def speeds(base_urls: dict[str, str], repeats: int = 2) -> dict:
    """Each scenario on each server in turn, `repeats` times (so load drift hits both), the best run of each."""
    best: dict = {name: {} for name in base_urls}
    for key, (concurrency, n, lengths) in SCENARIOS.items():
        for _ in range(repeats):
            for name, url in base_urls.items():
                run = speed(url, concurrency, n, lengths)
                if key not in best[name] or run["seconds"] < best[name][key]["seconds"]:
                    best[name][key] = run
            print(key, {name: best[name][key]["completion_tokens_per_s"] for name in best}, flush=True)
    for runs in best.values():
        for key in ("1", "4", "16"):
            runs[key]["speedup_over_concurrency_1"] = round(
                runs[key]["completion_tokens_per_s"] / runs["1"]["completion_tokens_per_s"], 2)
    return best


def main() -> None:
    from synthtune.model.packaged import materialize_packaged

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed-only", action="store_true", help="part 1 only; keep the file's other figures")
    args = parser.parse_args()
    out = ROOT / "bench/results/local_teacher.json"
    work = Path(tempfile.mkdtemp(prefix="local-teacher-"))
    model = work / "smollm2"
    materialize_packaged(NAME, model)
    results: dict = json.loads(out.read_text()) if args.speed_only and out.exists() else {}
    results.update({"model": NAME, "batch_size": 16})
    with LocalServer(str(model), name=NAME, batch_size=16, scheduler="static") as static, \
            LocalServer(str(model), name=NAME, batch_size=16, scheduler="continuous") as continuous:
        results["schedulers"] = speeds({"static": static.base_url, "continuous": continuous.base_url})
    results["speed"] = results["schedulers"]["continuous"]          # the default scheduler
    results["continuous_over_static"] = {
        k: round(results["schedulers"]["continuous"][k]["completion_tokens_per_s"]
                 / results["schedulers"]["static"][k]["completion_tokens_per_s"], 2) for k in results["speed"]}
    if args.speed_only:
        out.write_text(json.dumps(results, indent=2) + "\n")
        return
    with LocalServer(str(model), name=NAME, batch_size=16) as server:
        results["structured"] = {
            "json_object": usable_share(server.base_url, False, work / "cache-object"),
            "json_schema": usable_share(server.base_url, True, work / "cache-schema")}
        results["warm_requests_sent"] = usable_share(server.base_url, True, work / "cache-schema")["requests_sent"]
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
