"""Train: supervised fine-tuning with TRL's SFTTrainer (LoRA or full), loss on assistant turns only.

The only module that imports TRL and PEFT. Loss masking comes from the chat template's
`{% generation %}` markers (assistant_only_loss); batches are grouped by length because on
CPU padded, length-grouped batches beat TRL's packing by a wide margin (see docs/architecture.md).
Training curves go to DVCLive (dvc plots); final figures are returned for metrics/train.json.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from lib.config import ModelParams, TrainParams
from lib.modeling import load_base

log = logging.getLogger(__name__)


def _dvclive_callback(live_dir: Path):
    from dvclive import Live
    from transformers import TrainerCallback

    class DVCLiveLogger(TrainerCallback):
        """Log every trainer log line to DVCLive, one step per optimizer step."""

        def __init__(self) -> None:
            self.live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.live.step = state.global_step
            for key, value in (logs or {}).items():
                if isinstance(value, (int, float)) and key in {"loss", "eval_loss", "learning_rate",
                                                               "grad_norm", "mean_token_accuracy",
                                                               "eval_mean_token_accuracy"}:
                    name = key.replace("eval_", "eval/") if key.startswith("eval_") else f"train/{key}"
                    self.live.log_metric(name, float(value))
            self.live.next_step()

        def on_train_end(self, args, state, control, **kwargs):
            self.live.end()

    return DVCLiveLogger()


def save_deterministic(model, out_dir: Path) -> None:
    """Save weights/adapter so that the same run gives the same bytes on every machine.

    `Trainer.save_model` also pickles the training arguments (with this run's temp paths), and
    PEFT writes `target_modules` in set order, which changes with Python's hash seed.
    """
    import json

    model.save_pretrained(str(out_dir), safe_serialization=True)
    config_path = Path(out_dir) / "adapter_config.json"
    if config_path.exists():
        config = json.loads(config_path.read_text())
        if isinstance(config.get("target_modules"), list):
            config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def lora_config(train: TrainParams):
    from peft import LoraConfig

    return LoraConfig(r=train.lora.r, lora_alpha=train.lora.alpha, lora_dropout=train.lora.dropout,
                      target_modules=train.lora.target_modules, task_type="CAUSAL_LM", bias="none")


def sft_config(train: TrainParams, output_dir: str, seed: int, max_length: int, has_eval: bool):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=output_dir, seed=seed, data_seed=seed,
        learning_rate=train.lr, num_train_epochs=train.epochs, max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size, per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, warmup_steps=train.warmup_ratio,
        weight_decay=train.weight_decay, max_grad_norm=train.max_grad_norm,
        lr_scheduler_type=train.lr_scheduler, logging_steps=train.logging_steps,
        eval_strategy="steps" if has_eval else "no", eval_steps=train.eval_steps,
        save_strategy="no", report_to="none", bf16=False, fp16=False, use_cpu=True,
        max_length=max_length, assistant_only_loss=True, packing=False,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        dataloader_num_workers=0, disable_tqdm=True, include_num_input_tokens_seen="non_padding",
    )


def train_sft(train_rows: list[dict], val_rows: list[dict], base_dir: Path, out_dir: Path, live_dir: Path,
              model: ModelParams, train: TrainParams, seed: int, max_length: int) -> dict:
    """Fine-tune the base model on formatted conversations; save adapter/weights + tokenizer to out_dir."""
    import torch
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTTrainer

    set_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    lm, tokenizer = load_base(base_dir, model.trust_remote_code)
    tokenizer.padding_side = "right"  # the collator pads training batches; generation sets left itself
    to_ds = lambda rows: Dataset.from_list([{"messages": r["messages"]} for r in rows])  # noqa: E731
    with tempfile.TemporaryDirectory() as scratch:
        trainer = SFTTrainer(
            model=lm, args=sft_config(train, scratch, seed, max_length, bool(val_rows)),
            train_dataset=to_ds(train_rows), eval_dataset=to_ds(val_rows) if val_rows else None,
            processing_class=tokenizer, peft_config=lora_config(train) if train.method == "lora" else None,
            callbacks=[_dvclive_callback(live_dir)],
        )
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        started = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - started
        final_eval = trainer.evaluate() if val_rows else {}
        save_deterministic(trainer.model, out_dir)
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(out_dir))
    tokens = trainer.state.num_input_tokens_seen or 0
    metrics = {
        "train_loss": round(result.training_loss, 4),
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0, 3),
        "trainable_params": trainable,
        "train_seconds": round(seconds, 1),
        "method": train.method,
    }
    if "eval_loss" in final_eval:
        metrics["eval_loss"] = round(final_eval["eval_loss"], 4)
    if "eval_mean_token_accuracy" in final_eval:
        metrics["eval_token_accuracy"] = round(final_eval["eval_mean_token_accuracy"], 4)
    if tokens:  # real (non-padding) training tokens over wall time, evaluation passes included
        metrics["real_tokens_per_second"] = round(tokens / seconds, 1)
    return metrics
