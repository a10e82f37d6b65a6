"""Train: supervised fine-tuning with TRL's SFTTrainer (full, LoRA or QLoRA), loss on the trained tokens only.

synthtune.model is the only package that imports TRL and PEFT, always inside functions (a stage's
--help must not import torch). What is trained comes from the formatted rows: chat `messages`
(loss on the chat template's `{% generation %}` spans, assistant_only_loss), `prompt`/`completion`
(completion_only_loss) or raw `text` (every token). Batches are length-grouped and padded by
default because on CPU they beat TRL's packing by a wide margin (`train.packing` turns packing on;
see bench/train_throughput.py). The loss runs the LM head on the labelled positions only (one
cross-entropy over their logits) instead of TRL's chunked LM head, which on CPU scores every position
with per-token entropy and accuracy (about a third of the step time on the tiny model); evaluation
logs TRL's token accuracy and entropy from the same logits.

The pieces: methods (full/freezing, LoRA, QLoRA), checkpoints (run key and resume), dvclive_callback
(training curves for dvc plots), launcher (multi-process via accelerate; `launch_command` is
importable from here, as stages/train.py does). Final figures are returned for metrics/train.json.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from synthtune.core.config import ModelParams, TrainParams
from synthtune.core.errors import ParamsError, UserError
from synthtune.llm.lm_head import head_on_positions, labelled_positions
from synthtune.model.checkpoints import checkpoint_step, default_checkpoint_root, last_valid_checkpoint, run_key
from synthtune.model.dvclive_callback import dvclive_callback
from synthtune.model.launcher import launch_command
from synthtune.model.methods import prepare_model
from synthtune.model.precision import checked_dtype, device_description

__all__ = ["build_trainer", "check_max_length", "launch_command", "row_fields", "save_deterministic",
           "sft_config", "train_sft"]

log = logging.getLogger(__name__)


def check_max_length(tokenizer, rows: list[dict], max_length: int) -> None:
    """Fail when `max_length` leaves no assistant token to train on: shorter than the shortest prompt."""
    shortest = None
    for row in rows:
        if "messages" not in row:       # prompt/completion and text rows: format checked their lengths
            continue
        messages = row["messages"]
        first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
        if first is None:
            continue
        ids = tokenizer.apply_chat_template(messages[:first], add_generation_prompt=True, tokenize=True,
                                            return_dict=False)
        shortest = len(ids) if shortest is None else min(shortest, len(ids))
    if shortest is not None and shortest >= max_length:
        raise ParamsError(f"params.yaml: format.max_length {max_length} is not longer than the shortest prompt "
                          f"({shortest} tokens): no assistant token would be trained on")


def _trainer_class():
    from trl import SFTTrainer

    class LightLossSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss projects only the labelled positions through the LM head.

        The model's own forward with labels builds logits for every position, and TRL's chunked LM
        head scores every position too on CPU (it compacts to the labelled ones on Triton devices
        only). With a 49k vocabulary and assistant-only loss about half of the positions are prompt
        tokens, whose logits (and their fp32 cross-entropy) are computed for nothing. Here the head sees only the positions
        whose next token is trained on, and the loss is the same token-mean cross-entropy
        (`num_items_in_batch` keeps gradient accumulation exact). Evaluation computes TRL's eval
        metrics (mean token accuracy, entropy) from those logits; training steps skip them.
        """

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch
            import torch.nn.functional as F

            if return_outputs or self.args.loss_type != "nll" or self.compute_loss_func is not None \
                    or self.label_smoother is not None or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            keep, targets = labelled_positions(labels)
            with head_on_positions(self.accelerator.unwrap_model(model), keep):
                logits = model(**inputs, use_cache=False).logits.float()
            count = targets.numel() if num_items_in_batch is None else num_items_in_batch
            loss = F.cross_entropy(logits, targets, reduction="sum") / torch.as_tensor(count).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            if not model.training:      # the eval metrics TRL logs, from the labelled positions' logits
                with torch.no_grad():
                    valid = self.accelerator.gather_for_metrics(torch.tensor(targets.numel())).sum()
                    correct = self.accelerator.gather_for_metrics((logits.argmax(-1) == targets).sum()).sum()
                    log_p = logits.log_softmax(-1)
                    entropy = self.accelerator.gather_for_metrics(-(log_p.exp() * log_p).sum()).sum()
                if valid > 0:
                    self._metrics["eval"]["entropy"].append((entropy / valid).item())
                    self._metrics["eval"]["mean_token_accuracy"].append((correct / valid).item())
            return loss

    return LightLossSFTTrainer


def row_fields(row: dict) -> tuple[str, ...]:
    """What TRL trains on for a formatted row: chat `messages` (loss on assistant turns),
    `prompt`/`completion` (loss on the completion), or raw `text` (every token)."""
    if "messages" in row:
        return ("messages",)
    if "prompt" in row:
        return ("prompt", "completion")
    return ("text",)


def sft_config(train: TrainParams, output_dir: str, seed: int, max_length: int, has_eval: bool,
               fields: tuple[str, ...] = ("messages",)):
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    dtype = checked_dtype(train.dtype, "train.dtype", cuda)   # autocast dtype; master weights stay fp32
    if dtype == "float16" and not cuda:
        raise ParamsError("params.yaml: train.dtype float16 needs a CUDA device; use auto, bfloat16 or float32")
    saving = train.save_steps > 0
    best = has_eval and saving and train.load_best
    if best and train.save_steps % train.eval_steps:
        raise ParamsError(f"params.yaml: train.save_steps ({train.save_steps}) must be a multiple of "
                          f"train.eval_steps ({train.eval_steps}) to keep the best checkpoint (train.load_best)")
    if train.early_stopping_patience and not best:
        raise ParamsError("params.yaml: train.early_stopping_patience needs validation data, train.save_steps > 0 "
                          "and train.load_best: true")
    return SFTConfig(
        output_dir=output_dir, seed=seed, data_seed=seed,
        learning_rate=train.lr, num_train_epochs=train.epochs, max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size, per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, warmup_steps=train.warmup_ratio,
        weight_decay=train.weight_decay, max_grad_norm=train.max_grad_norm,
        lr_scheduler_type=train.lr_scheduler, logging_steps=train.logging_steps,
        eval_strategy="steps" if has_eval else "no", eval_steps=train.eval_steps,
        save_strategy="steps" if saving else "no", save_steps=max(train.save_steps, 1),
        save_total_limit=2 if saving else None, save_only_model=False,
        load_best_model_at_end=best, metric_for_best_model="eval_loss" if best else None,
        greater_is_better=False if best else None,
        report_to="none", bf16=dtype == "bfloat16" and train.method != "qlora", fp16=dtype == "float16",
        use_cpu=not cuda, ddp_find_unused_parameters=False,
        max_length=max_length, assistant_only_loss=fields == ("messages",), packing=train.packing,
        completion_only_loss=True if "completion" in fields else None,
        train_sampling_strategy="group_by_length" if train.group_by_length and not train.packing else "random",
        activation_checkpointing=train.gradient_checkpointing,  # TRL turns it on by default
        dataloader_num_workers=0, disable_tqdm=True, include_num_input_tokens_seen="non_padding",
    )


def build_trainer(train_rows: list[dict], val_rows: list[dict], base_dir: Path, output_dir: Path,
                  model: ModelParams, train: TrainParams, seed: int, max_length: int, callbacks=()):
    """An SFTTrainer for the run, with the model prepared for `train.method`; used by train_sft and the bench."""
    import torch
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, set_seed

    set_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    lm, tokenizer, peft_config = prepare_model(base_dir, model, train)
    check_max_length(tokenizer, train_rows, max_length)
    tokenizer.padding_side = "right"  # the collator pads training batches; generation sets left itself
    fields = row_fields(train_rows[0])
    to_ds = lambda rows: Dataset.from_list([{f: r[f] for f in fields} for r in rows])  # noqa: E731
    args = sft_config(train, str(output_dir), seed, max_length, bool(val_rows), fields)
    callbacks = list(callbacks)
    if train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=train.early_stopping_patience))
    trainer = _trainer_class()(
        model=lm, args=args, train_dataset=to_ds(train_rows), eval_dataset=to_ds(val_rows) if val_rows else None,
        processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks,
    )
    return trainer, tokenizer


def save_deterministic(model, out_dir: Path) -> None:
    """Save weights/adapter so that the same run gives the same bytes on every machine.

    `Trainer.save_model` also pickles the training arguments (with this run's temp paths), and
    PEFT writes `target_modules` in set order, which changes with Python's hash seed.
    """
    model.save_pretrained(str(out_dir), safe_serialization=True)
    config_path = Path(out_dir) / "adapter_config.json"
    if config_path.exists():
        config = json.loads(config_path.read_text())
        if isinstance(config.get("target_modules"), list):
            config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def final_evaluation(trainer) -> dict:
    """The eval metrics of the model the run ends with. When the trainer already evaluated exactly that
    model (the last step, or the best checkpoint it reloaded), that logged result is reused: a second
    pass over val costs as much as several training steps on CPU (measured: 67-75 s for SmolLM2)."""
    state = trainer.state
    best = state.best_model_checkpoint if trainer.args.load_best_model_at_end else None
    step = checkpoint_step(best) if best else state.global_step
    logged = [h for h in state.log_history if "eval_loss" in h and h.get("step") == step]
    return dict(logged[-1]) if logged else trainer.evaluate()


def train_sft(train_rows: list[dict], val_rows: list[dict], base_dir: Path, out_dir: Path, live_dir: Path,
              model: ModelParams, train: TrainParams, seed: int, max_length: int,
              checkpoint_root: Path | None = None, callbacks=()) -> dict | None:
    """Fine-tune the base model on formatted rows; save adapter/weights + tokenizer to out_dir.

    Returns the metrics on the main process and None on the other ranks of a distributed run.
    """
    if not train_rows:
        raise UserError("no training conversations: data/formatted/train.jsonl is empty")
    root = Path(checkpoint_root) if checkpoint_root else default_checkpoint_root(out_dir)
    key = run_key(train_rows, val_rows, base_dir, model, train, seed, max_length)
    run_dir = root / key
    trainer, tokenizer = build_trainer(train_rows, val_rows, base_dir, run_dir, model, train, seed, max_length,
                                       callbacks)
    main = trainer.args.process_index == 0
    log.info("process %d/%d: %s, run key %s", trainer.args.process_index, trainer.args.world_size,
             train.method, key)
    if main:
        trainer.add_callback(dvclive_callback(live_dir))
        for stale in root.glob("*") if root.is_dir() else []:
            if stale.name != key:   # checkpoints of other params/data can never be resumed
                shutil.rmtree(stale, ignore_errors=True)
    resume = last_valid_checkpoint(run_dir) if train.resume else None
    tokens_before = 0
    if resume is not None:
        log.info("resuming from %s", resume)
        # the resumed state counts the tokens of the killed run too; throughput is this run's only
        tokens_before = json.loads((resume / "trainer_state.json").read_text()).get("num_input_tokens_seen", 0)
    elif main and not train.resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    final_eval = final_evaluation(trainer) if val_rows else {}
    trainer.accelerator.wait_for_everyone()
    if not main:
        return None
    save_deterministic(trainer.model, out_dir)
    tokenizer.padding_side = "left"   # saved for predict, which generates from left-padded batches
    tokenizer.save_pretrained(str(out_dir))
    shutil.rmtree(run_dir, ignore_errors=True)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    tokens = (trainer.state.num_input_tokens_seen or 0) - tokens_before
    metrics = {
        "train_loss": round(result.training_loss, 4),
        "steps": trainer.state.global_step,
        "epochs": round(trainer.state.epoch or 0, 3),
        "trainable_params": trainable,
        "train_seconds": round(seconds, 1),
        "method": train.method,
        "dtype": "bfloat16" if trainer.args.bf16 else "float16" if trainer.args.fp16 else "float32",
        "resumed_from_step": checkpoint_step(resume) if resume else 0,
        "processes": trainer.args.world_size,
        "device": device_description(),      # for the model card; the only machine-dependent entry
    }
    if "eval_loss" in final_eval:
        metrics["eval_loss"] = round(final_eval["eval_loss"], 4)
    if "eval_mean_token_accuracy" in final_eval:
        metrics["eval_token_accuracy"] = round(final_eval["eval_mean_token_accuracy"], 4)
    if trainer.state.best_metric is not None:
        metrics["best_eval_loss"] = round(trainer.state.best_metric, 4)
        metrics["best_step"] = checkpoint_step(trainer.state.best_model_checkpoint) \
            if trainer.state.best_model_checkpoint else trainer.state.global_step
    if tokens and seconds > 0:  # real (non-padding) training tokens over wall time, evaluation passes included
        metrics["real_tokens_per_second"] = round(tokens / seconds, 1)
    return metrics
