"""Stage `train`: fine-tune the base model on the formatted train split (TRL SFTTrainer).

Reads:  data/formatted/{train,val}.jsonl, models/base, params [seed, model, format, train]
Writes: models/tuned (adapter or weights + tokenizer + chat template), metrics/train.json, dvclive/train (plots)
Run:    python -m stages.train data/formatted models/base models/tuned dvclive/train metrics/train.json
        With `train.launcher: accelerate` the same command re-runs itself under
        `accelerate launch --config_file <train.accelerate_config> -m stages.train ...` (DDP/FSDP/ZeRO-3).
        Checkpoints live in models/tuned.ckpt/<run key>/ until success: a killed run resumes there.
"""
import shutil
import logging
import subprocess
import sys

from synthtune.core.cli import run_stage, stage
from synthtune.core.io import read_jsonl, write_json
from synthtune.model.training import launch_command, train_sft

log = logging.getLogger("stages.train")


def main(argv: list[str] | None = None) -> None:
    args, params = stage(__doc__, argv, "formatted", "base", "out", "live", "metrics")
    relaunch = launch_command(params.train, sys.argv[1:] if argv is None else argv)
    if relaunch:
        log.info("relaunching: %s", " ".join(relaunch))
        raise SystemExit(subprocess.call(relaunch))
    metrics = train_sft(
        train_rows=read_jsonl(args.formatted / "train.jsonl"),
        val_rows=read_jsonl(args.formatted / "val.jsonl", allow_empty=True),
        base_dir=args.base, out_dir=args.out, live_dir=args.live,
        model=params.model, train=params.train, seed=params.seed, max_length=params.format.max_length,
    )
    if metrics is not None:   # None on the non-main ranks of a distributed run
        if (args.formatted / "format.json").exists():   # the template travels with the model (predict, serving)
            shutil.copyfile(args.formatted / "format.json", args.out / "format.json")
        write_json(args.metrics, metrics)
        log.info("trained: %s", metrics)


if __name__ == "__main__":
    run_stage(main)
