"""Bench: the train stage's TRL trainer vs a minimal hand-written PyTorch loop, same model, same batches.

One run, side by side, on the default model (models/base when `dvc repro` has built it, else a
fresh tiny model of params.yaml `model.tiny`; throughput does not depend on the weights' values)
and the default data (data/formatted/train.jsonl when it exists, else freshly generated and
length-fitted dialogues):

* real-token throughput (non-pad tokens / s) of `synthtune.model.training.build_trainer` (what the stage runs)
  and of a plain loop (forward with labels, backward, clip, optimizer + scheduler step) over the
  exact batches the trainer produced, with the trainer's own optimizer class and settings; for
  `lora` (the default method) and `full`. Target: ratio >= 0.9.
* pad tokens as a fraction of processed tokens, random vs length-grouped batches (one epoch).
  Target: <= 10% with the default (grouped) batching.
* packed vs padded (length-grouped) real tokens / s through TRL.

Writes bench/results/train_throughput.json. Run: python bench/train_throughput.py [--steps N]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def default_inputs(scratch: Path):
    """(base_dir, train_rows, params, where) for the default model and data."""
    from synthtune.core.config import load_params
    from synthtune.core.io import read_jsonl

    params = load_params(ROOT / "params.yaml")
    base = ROOT / "models/base"
    data = ROOT / "data/formatted/train.jsonl"
    if (base / "manifest.json").exists() and data.exists():
        return base, read_jsonl(data), params, "models/base + data/formatted/train.jsonl"
    from synthtune.generate.dialogue.recipe import generate_dialogues, load_catalog, load_graph
    from synthtune.model.base_model import build_tiny_model, train_tokenizer
    from synthtune.model.formats import format_split, to_chat

    source = params.sources["recipe_tod"]
    dialogues = generate_dialogues(load_catalog(ROOT / source.path), load_graph(ROOT / "data/seeds/graphs/recipe.json"),
                                   n=300, seed=params.seed, max_turns=source.max_turns)
    tokenizer = train_tokenizer([m["content"] for d in dialogues for m in to_chat(d)["messages"]],
                                params.model.tiny.vocab_size)
    model = build_tiny_model(tokenizer, params.model.tiny, seed=params.seed)
    base = scratch / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    (base / "manifest.json").write_text(json.dumps({"name": "tiny", "path": "."}))
    rows, _ = format_split(dialogues, tokenizer, params.format)
    return base, rows, params, "fresh tiny model + generated dialogues"


class Recorder:
    """Wraps a trainer's training_step to keep every batch it trains on (for the plain loop)."""

    def __init__(self, trainer):
        self.batches = []
        original = trainer.training_step

        def step(model, inputs, *args, **kwargs):
            self.batches.append({k: v.clone() for k, v in inputs.items() if k in ("input_ids", "attention_mask",
                                                                                   "labels", "position_ids")})
            return original(model, inputs, *args, **kwargs)

        trainer.training_step = step


def step_clock():
    """A TrainerCallback keeping the wall time at the end of each step (steady-state step time, no setup)."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends = []

        def on_step_begin(self, args, state, control, **kwargs):
            if not self.ends:
                self.ends.append(time.perf_counter())       # the start of the first step

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.perf_counter())

    return Clock()


def steady(ends: list[float]) -> float:
    """Seconds per step after the first one (which pays lazy allocation and first-batch costs)."""
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return sum(gaps[1:]) / max(1, len(gaps) - 1)


def run_trl(base, rows, params, train, scratch, record=False):
    from synthtune.model.training import build_trainer

    clock = step_clock()
    trainer, _ = build_trainer(rows, [], base, scratch / "trl", params.model, train, params.seed,
                               params.format.max_length, callbacks=[clock])
    recorder = Recorder(trainer) if record else None
    started, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    seconds = time.perf_counter() - started
    return (seconds, time.process_time() - cpu, steady(clock.ends)), trainer.state.num_input_tokens_seen, recorder


def run_plain(base, params, train, batches):
    """A minimal PyTorch loop: same model preparation, optimizer, schedule and autocast as the trainer;
    its loss is the model's own (`model(**batch).loss`: every position's logits)."""
    import torch
    from transformers import Trainer, get_scheduler, set_seed

    from synthtune.model.methods import prepare_model
    from synthtune.model.training import sft_config

    set_seed(params.seed)
    model, _, peft_config = prepare_model(base, params.model, train)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
    args = sft_config(train, "/tmp/unused", params.seed, params.format.max_length, False)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and "bias" not in n and "norm" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and ("bias" in n or "norm" in n)]
    optimizer = optimizer_cls([{"params": decay, "weight_decay": train.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], **optimizer_kwargs)
    scheduler = get_scheduler(train.lr_scheduler, optimizer, args.get_warmup_steps(len(batches)), len(batches))
    model.train()
    # the trainer's mixed precision: bf16 autocast where `train.dtype` resolves to bfloat16 (fp32 master weights)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(args.bf16))
    started, cpu = time.perf_counter(), time.process_time()
    ends = [started]
    for batch in batches:
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ends.append(time.perf_counter())
    return time.perf_counter() - started, time.process_time() - cpu, steady(ends)


def pad_fractions(base, rows, params):
    """Pad share of processed tokens over one epoch of the trainer's own dataloader, random vs grouped."""
    from synthtune.model.training import build_trainer

    out = {}
    for name, grouped in (("random", False), ("group_by_length", True)):
        train = params.train.model_copy(update={"group_by_length": grouped, "packing": False, "save_steps": 0})
        with tempfile.TemporaryDirectory() as scratch:
            trainer, _ = build_trainer(rows, [], base, Path(scratch), params.model, train, params.seed,
                                       params.format.max_length)
            real = total = 0
            for batch in trainer.get_train_dataloader():
                real += int(batch["attention_mask"].sum())
                total += batch["attention_mask"].numel()
        out[name] = round(1 - real / total, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--packed-steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: stable figures on a shared machine; same for both loops)")
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    results = {"torch_threads": torch.get_num_threads(), "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        base, rows, params, where = default_inputs(scratch)
        results["inputs"] = where
        results["model"] = json.loads((base / "manifest.json").read_text()).get("name")
        results["train_examples"] = len(rows)
        results["batch_size"] = params.train.batch_size
        results["pad_fraction"] = pad_fractions(base, rows, params)
        print("pad fraction:", results["pad_fraction"], flush=True)
        for method in ("lora", "full"):
            train = params.train.model_copy(update={"method": method, "max_steps": args.steps, "save_steps": 0,
                                                    "logging_steps": 10, "packing": False})
            trl_times, plain_times, batches, tokens = [], [], None, 0
            for _ in range(args.repeats):   # alternate, so machine load drifts hit both loops alike
                seconds, _, recorder = run_trl(base, rows, params, train, scratch, record=batches is None)
                if recorder is not None:
                    batches = recorder.batches
                    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
                trl_times.append(seconds)
                plain_times.append(run_plain(base, params, train, batches))
            trl_wall, plain_wall = min(t[0] for t in trl_times), min(t[0] for t in plain_times)
            trl_cpu, plain_cpu = min(t[1] for t in trl_times), min(t[1] for t in plain_times)
            trl_step, plain_step = min(t[2] for t in trl_times), min(t[2] for t in plain_times)
            results[method] = {
                "real_tokens": tokens,
                "trl_wall_seconds": [round(t[0], 2) for t in trl_times],
                "plain_wall_seconds": [round(t[0], 2) for t in plain_times],
                "trl_cpu_seconds": [round(t[1], 2) for t in trl_times],
                "plain_cpu_seconds": [round(t[1], 2) for t in plain_times],
                "trl_real_tokens_per_s": round(tokens / trl_wall, 1),
                "plain_real_tokens_per_s": round(tokens / plain_wall, 1),
                "ratio_trl_over_plain": round(plain_wall / trl_wall, 3),          # best wall time of each
                "ratio_trl_over_plain_cpu_time": round(plain_cpu / trl_cpu, 3),   # insensitive to other load
                # seconds per step after the first: what a long run sees (train() setup and the
                # first step's lazy allocations are a fixed cost, large in a 4-step bench)
                "trl_steady_step_seconds": round(trl_step, 2),
                "plain_steady_step_seconds": round(plain_step, 2),
                "ratio_trl_over_plain_steady": round(plain_step / trl_step, 3),
            }
            print(method, results[method], flush=True)
        padded_tps = results["lora"]["trl_real_tokens_per_s"]
        train = params.train.model_copy(update={"max_steps": args.packed_steps, "save_steps": 0, "packing": True})
        (seconds, _, _), seen, _ = run_trl(base, rows, params, train, scratch)
        results["packed_vs_padded"] = {"packed_real_tokens_per_s": round(seen / seconds, 1),
                                       "padded_grouped_real_tokens_per_s": padded_tps,
                                       "packed_steps": args.packed_steps,
                                       "speedup_padded_over_packed": round(padded_tps / (seen / seconds), 2)}
        print("packing:", results["packed_vs_padded"], flush=True)
    results["targets"] = {"ratio_trl_over_plain": ">= 0.9", "ratio_trl_over_plain_steady": ">= 0.9",
                          "pad_fraction_grouped": "<= 0.10"}
    out = ROOT / "bench/results/train_throughput.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
