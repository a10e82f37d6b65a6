"""Bench: the train stage's loss with the LM head on the labelled positions only vs on every position.

Side by side in one process, alternating, on the default model and data (models/base and
data/formatted/{train,val}.jsonl after `dvc repro format`, else bench/train_throughput.py's fresh
tiny model and dialogues), default train params:

* `labelled`: what the train stage runs (synthtune.model.training: the head sees only the
  positions whose next token is trained on; evaluation computes its metrics from those logits);
* `all`: the previous trainer: the model's own loss over every position's logits in training,
  TRL's chunked LM head (every position on CPU, with entropy and accuracy) in evaluation.

Per variant: seconds per training step (after the first; the speedup sums each step's best time
over the repeats, both variants seeing the same batches in the same order), wall seconds of one evaluation
pass over val, the first steps' losses (they must agree to float noise), and the share of positions
that carry a label. Writes bench/results/lm_head_positions.json.
Run: python bench/lm_head_positions.py [--steps 8] [--repeats 2]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from train_throughput import default_inputs, step_clock, steady  # noqa: E402


def all_positions_trainer(light_class):
    """The trainer as it was: the model's own loss (every position's logits) in training, TRL in eval."""
    from trl import SFTTrainer

    class AllPositions(light_class):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or not model.training:
                return SFTTrainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
            kwargs = dict(inputs, use_cache=False)
            if num_items_in_batch is not None:
                kwargs["num_items_in_batch"] = num_items_in_batch
            return model(**kwargs).loss

    return AllPositions


def run(variant, base, rows, val_rows, params, train, scratch):
    import synthtune.model.training as training

    original = training._trainer_class
    if variant == "all":
        training._trainer_class = lambda: all_positions_trainer(original())
    try:
        clock = step_clock()
        trainer, _ = training.build_trainer(rows, val_rows, base, scratch / variant, params.model, train,
                                            params.seed, params.format.max_length, callbacks=[clock])
    finally:
        training._trainer_class = original
    trainer.train()
    losses = [round(h["loss"], 4) for h in trainer.state.log_history if "loss" in h]
    started = time.perf_counter()
    evaluation = trainer.evaluate()
    eval_seconds = time.perf_counter() - started
    gaps = [b - a for a, b in zip(clock.ends, clock.ends[1:])]
    return {"step_seconds": steady(clock.ends), "gaps": gaps[1:], "eval_seconds": eval_seconds, "losses": losses,
            "eval_loss": round(evaluation["eval_loss"], 4),
            "eval_token_accuracy": round(evaluation.get("eval_mean_token_accuracy", float("nan")), 4)}


def labelled_share(trainer) -> float:
    labelled = total = 0
    for batch in trainer.get_train_dataloader():
        labelled += int((batch["labels"][:, 1:] != -100).sum())
        total += int(batch["attention_mask"].sum())
    return labelled / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--val-rows", type=int, default=64, help="rows of val in the timed evaluation pass")
    args = parser.parse_args()
    import torch

    from synthtune.core.io import read_jsonl
    from synthtune.model.training import build_trainer

    results = {"torch_threads": torch.get_num_threads(), "steps": args.steps}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        base, rows, params, where = default_inputs(scratch)
        val_path = ROOT / "data/formatted/val.jsonl"
        val_rows = (read_jsonl(val_path) if val_path.exists() else rows[-args.val_rows:])[:args.val_rows]
        results.update(inputs=where, model=json.loads((base / "manifest.json").read_text()).get("name"),
                       batch_size=params.train.batch_size, val_rows=len(val_rows))
        train = params.train.model_copy(update={"max_steps": args.steps, "save_steps": 0, "logging_steps": 1,
                                                "eval_steps": 10 ** 6})
        trainer, _ = build_trainer(rows, [], base, scratch / "share", params.model, train, params.seed,
                                   params.format.max_length)
        results["labelled_share_of_real_tokens"] = round(labelled_share(trainer), 4)
        del trainer
        runs = {"labelled": [], "all": []}
        for _ in range(args.repeats):      # alternate, so load drifts hit both alike
            for variant in runs:
                runs[variant].append(run(variant, base, rows, val_rows, params, train, scratch))
                print(variant, runs[variant][-1], flush=True)
    for variant, rs in runs.items():
        results[variant] = {"step_seconds": [round(r["step_seconds"], 2) for r in rs],
                            "eval_seconds": [round(r["eval_seconds"], 2) for r in rs],
                            "losses": rs[0]["losses"], "eval_loss": rs[0]["eval_loss"],
                            "eval_token_accuracy": rs[0]["eval_token_accuracy"]}
    # both variants train on the same batches in the same order: step i's best time over the repeats,
    # summed, is robust to a hiccup in one repeat (the machine is shared)
    step_sum = {v: sum(min(r["gaps"][i] for r in rs) for i in range(len(rs[0]["gaps"]))) for v, rs in runs.items()}
    best = {v: (step_sum[v], min(r["eval_seconds"] for r in rs)) for v, rs in runs.items()}
    results["best_step_seconds_summed"] = {v: round(t, 2) for v, t in step_sum.items()}
    results["step_speedup_labelled_over_all"] = round(best["all"][0] / best["labelled"][0], 3)
    results["eval_speedup_labelled_over_all"] = round(best["all"][1] / best["labelled"][1], 3)
    out = ROOT / "bench/results/lm_head_positions.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k not in runs}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
