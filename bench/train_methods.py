"""Bench: LoRA vs QLoRA vs full fine-tuning of the default model — step time and peak RSS, side by side.

Each (method, repeat) trains in a child process of its own, because peak RSS is a per-process high
water mark: one process per run measures that run alone. The runs alternate (lora, qlora, full,
lora, ...) so that load drifting on a shared machine hits every method alike. Inputs are the train
stage's own (`synthtune.model.training.build_trainer` on models/base and data/formatted/train.jsonl,
the same as bench/train_throughput.py), at params.yaml's sizes: `train.batch_size`,
`format.max_length`, `train.dtype` (auto: bf16 where the CPU has it), `train.lora`, `train.qlora`.

Figures per method: seconds per step after the first (the first pays lazy allocation), real
(non-pad) tokens / s, and the child's peak RSS in GB (model load + training). Target: the
default method's peak RSS <= 12 GB. QLoRA needs bitsandbytes; without it the method is skipped.

Writes bench/results/train_methods.json. Run: python bench/train_methods.py [--steps 6 --repeats 2]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

METHODS = ("lora", "qlora", "full")


def child(method: str, steps: int) -> dict:
    """Train `steps` steps with `method` in this process (train_throughput's TRL run); timings and peak RSS."""
    from train_throughput import default_inputs, run_trl

    from synthtune.model.precision import resolve_dtype

    with tempfile.TemporaryDirectory() as tmp:
        base, rows, params, where = default_inputs(Path(tmp))
        train = params.train.model_copy(update={"method": method, "max_steps": steps, "save_steps": 0,
                                                "logging_steps": steps, "packing": False})
        (seconds, _, steady_step), tokens, _ = run_trl(base, rows, params, train, Path(tmp))
        # qlora trains without autocast: bitsandbytes computes in train.qlora.compute_dtype
        dtype = f"nf4, compute {train.qlora.compute_dtype}" if method == "qlora" else resolve_dtype(train.dtype)
        return {"inputs": where, "model": json.loads((base / "manifest.json").read_text()).get("name"),
                "dtype": dtype, "batch_size": train.batch_size, "max_length": params.format.max_length,
                "steps": steps, "wall_seconds": round(seconds, 2), "steady_step_seconds": round(steady_step, 2),
                "real_tokens_per_s": round(tokens / seconds, 1),
                # this child's high-water mark (Linux reports ru_maxrss in KiB)
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps)))
        return
    from synthtune.model.base_model import bitsandbytes_available

    methods = [m for m in METHODS if m != "qlora" or bitsandbytes_available()]
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for repeat in range(args.repeats):
        for method in methods:
            out = subprocess.run([sys.executable, __file__, "--child", method, "--steps", str(args.steps)],
                                 check=True, capture_output=True, text=True, cwd=ROOT)
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(method, repeat, runs[method][-1], flush=True)
    first = runs[methods[0]][0]
    results = {key: first[key] for key in ("inputs", "model", "dtype", "batch_size", "max_length", "steps")}
    for method, done in runs.items():
        results[method] = {
            "steady_step_seconds": [r["steady_step_seconds"] for r in done],
            "real_tokens_per_s": max(r["real_tokens_per_s"] for r in done),
            "peak_rss_gb": max(r["peak_rss_gb"] for r in done),
        }
    lora_step = min(runs["lora"], key=lambda r: r["steady_step_seconds"])["steady_step_seconds"]
    for method in methods:
        best = min(r["steady_step_seconds"] for r in runs[method])
        results[method]["step_over_lora"] = round(best / lora_step, 2)   # best steady step of each
    results["skipped"] = [m for m in METHODS if m not in methods]
    results["targets"] = {"lora.peak_rss_gb": "<= 12"}
    out = ROOT / "bench/results/train_methods.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
