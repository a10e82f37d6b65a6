"""Training curves for `dvc plots`: a transformers TrainerCallback that logs to DVCLive."""
from __future__ import annotations

from pathlib import Path

# The trainer log keys that become curves (train/<key>, eval/<key>); the rest (runtime, flos) are noise.
LOGGED_KEYS = {"loss", "eval_loss", "learning_rate", "grad_norm", "mean_token_accuracy", "eval_mean_token_accuracy"}


def dvclive_callback(live_dir: Path):
    """A DVCLive logger writing to `live_dir` (classes built here: importing this module imports no dvclive)."""
    from dvclive import Live
    from transformers import TrainerCallback

    class DVCLiveLogger(TrainerCallback):
        """Log every trainer log line to DVCLive, one step per optimizer step.

        A resumed run replays the checkpoint's log history first, so the curves cover the whole run
        even though DVC deleted dvclive/ (an out) before the re-run.
        """

        def __init__(self) -> None:
            self.live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
            self.started = False

        def _write(self, step: int, logs: dict) -> None:
            self.live.step = step
            for key, value in logs.items():
                if isinstance(value, (int, float)) and key in LOGGED_KEYS:
                    name = key.replace("eval_", "eval/") if key.startswith("eval_") else f"train/{key}"
                    self.live.log_metric(name, float(value))
            self.live.next_step()

        def on_step_begin(self, args, state, control, **kwargs):
            if not self.started:
                self.started = True
                for entry in state.log_history:   # non-empty only when resuming
                    self._write(entry.get("step", 0), entry)

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.started = True
            self._write(state.global_step, logs or {})

        def on_train_end(self, args, state, control, **kwargs):
            self.live.end()

    return DVCLiveLogger()
