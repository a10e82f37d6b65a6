"""Bench: batched greedy generation vs one prompt at a time, same model, same prompts, one run.

Both sides call synthtune.llm.backends.hf.generate (length-sorted, left-padded batches), the code predict runs.

Uses models/base when `dvc repro` has built it, else a freshly built tiny model of the default
shape (untrained: the cost of generation does not depend on the weights' values, only
max_new_tokens is fixed by disabling the end token). Prints the ratio and writes
bench/results/generation_batching.json. Target (issue: prediction): >= 10x on 64 prompts.
"""
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_PROMPTS, NEW_TOKENS, BATCH = 64, 32, 64


def load_model():
    from synthtune.core.config import load_params
    from synthtune.model.base_model import build_tiny_model, load_base, train_tokenizer

    if (ROOT / "models/base/manifest.json").exists():
        return load_base(ROOT / "models/base")
    params = load_params(ROOT / "params.yaml")
    texts = [f"sample text number {i} about pasta and bread" for i in range(200)]
    tokenizer = train_tokenizer(texts, params.model.tiny.vocab_size)
    return build_tiny_model(tokenizer, params.model.tiny, seed=0).eval(), tokenizer


def timed_generate(model, tokenizer, prompts, batch_size):
    """Tokens per second of synthtune.llm.backends.hf.generate (the predict code path), end token disabled."""
    from synthtune.llm.backends.hf import generate

    started = time.perf_counter()
    generate(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
    return len(prompts) * NEW_TOKENS / (time.perf_counter() - started)


def main() -> None:
    import torch

    torch.manual_seed(0)
    model, tokenizer = load_model()
    prompts = [[{"role": "user", "content": f"how long do I boil pasta number {i}?"}] for i in range(N_PROMPTS)]
    timed_generate(model, tokenizer, prompts[:4], 4)  # warm-up
    single = timed_generate(model, tokenizer, prompts, 1)
    batched = timed_generate(model, tokenizer, prompts, BATCH)
    result = {"prompts": N_PROMPTS, "new_tokens": NEW_TOKENS, "batch_size": BATCH,
              "single_tokens_per_s": round(single, 1), "batched_tokens_per_s": round(batched, 1),
              "ratio": round(batched / single, 2), "target_ratio": 10.0}
    out = ROOT / "bench/results/generation_batching.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"generation batching: {result['ratio']}x ({batched:.0f} vs {single:.0f} tokens/s) -> {out}")


if __name__ == "__main__":
    main()
