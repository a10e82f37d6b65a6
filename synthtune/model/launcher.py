"""Multi-process training: the `accelerate launch` command the train stage re-runs itself under.

The stage stays one command in dvc.yaml whatever the launcher; with `train.launcher: accelerate`
it starts `accelerate launch ... -m stages.train <same argv>` and waits, and the launched ranks
(which see LOCAL_RANK) train in-process.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from synthtune.core.config import TrainParams
from synthtune.core.errors import ParamsError


def launch_command(train: TrainParams, argv: list[str]) -> list[str] | None:
    """The `accelerate launch` command that re-runs `stages.train` with `argv`, or None to train in-process.

    None when `train.launcher` is `python`, or when this process was itself started by a launcher
    (torchrun/accelerate set LOCAL_RANK).
    """
    if train.launcher != "accelerate" or "LOCAL_RANK" in os.environ:
        return None
    config = Path(train.accelerate_config)
    if not config.is_file():
        raise ParamsError(f"params.yaml: train.accelerate_config: {config} not found")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    if train.num_processes:
        cmd += ["--num_processes", str(train.num_processes)]
    return cmd + ["-m", "stages.train", *argv]
