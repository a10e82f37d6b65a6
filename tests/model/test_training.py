"""Training: freezing flags, LoRA/QLoRA/full on the tiny model, assistant-only labels, bad-input errors,
resume from a checkpoint after a crash, and a 2-process DDP run through `accelerate launch` on CPU."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthtune.core.config import FreezeParams, ModelParams, TrainParams
from synthtune.core.errors import ParamsError

ROOT = Path(__file__).resolve().parents[2]
MAX_LENGTH = 192


@pytest.fixture(scope="module")
def rows(dialogues):
    from synthtune.model.formats import to_chat

    # first two exchanges of each dialogue: short sequences keep every run to a few seconds
    return [{"messages": to_chat(d)["messages"][:4]} for d in dialogues]


@pytest.fixture(scope="module")
def base_dir(tiny_base_dir):
    return tiny_base_dir


def params(**update) -> TrainParams:
    base = dict(method="lora", lr=5.0e-3, max_steps=2, batch_size=4, eval_steps=2, save_steps=2, logging_steps=1)
    base.update(update)
    return TrainParams.model_validate(base)


def run(rows, base_dir, tmp_path, name="run", train=None, val=True, callbacks=(), **kw):
    from synthtune.model.training import train_sft

    return train_sft(rows[:16], rows[16:20] if val else [], base_dir, tmp_path / name, tmp_path / f"{name}.live",
                     ModelParams(), train or params(**kw), seed=0, max_length=MAX_LENGTH,
                     checkpoint_root=tmp_path / f"{name}.ckpt", callbacks=callbacks)


# ------------------------------------------------------------------ freezing (method: full)

CATEGORIES = {"embeddings": "embed_tokens", "norms": "norm", "attention": "self_attn", "mlp": "mlp"}


@pytest.mark.parametrize("flag", ["embeddings", "norms", "attention", "mlp"])
def test_each_freezing_flag_freezes_exactly_its_parameters(tiny_model, flag):
    from synthtune.model.methods import apply_freezing

    model = copy.deepcopy(tiny_model)
    apply_freezing(model, FreezeParams(**{flag: True}))
    for name, param in model.named_parameters():
        hit = CATEGORIES[flag] in name and not (flag == "attention" and "norm" in name)
        assert param.requires_grad is not hit, name


def test_layers_not_to_freeze_stay_trainable(tiny_model):
    from synthtune.model.methods import apply_freezing

    model = copy.deepcopy(tiny_model)
    counts = apply_freezing(model, FreezeParams(embeddings=True, norms=True, attention=True, mlp=True, other=True,
                                                layers_not_to_freeze=[1]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".layers.1." in n for n in trainable)
    assert {n for n, _ in model.named_parameters() if ".layers.1." in n} == trainable
    assert counts["embeddings"] == 0 and counts["attention"] > 0
    model = copy.deepcopy(tiny_model)   # a name substring works too
    apply_freezing(model, FreezeParams(mlp=True, layers_not_to_freeze=["layers.0.mlp.up_proj"]))
    assert {n for n, p in model.named_parameters() if "mlp" in n and p.requires_grad} == \
        {"model.layers.0.mlp.up_proj.weight"}


def test_freezing_everything_is_an_error(tiny_model):
    from synthtune.model.methods import apply_freezing

    with pytest.raises(ParamsError, match="freezes every parameter"):
        apply_freezing(copy.deepcopy(tiny_model),
                       FreezeParams(embeddings=True, norms=True, attention=True, mlp=True, other=True))


# ------------------------------------------------------------------ methods run

def test_full_with_frozen_embeddings_trains_and_saves(rows, base_dir, tmp_path):
    from safetensors.torch import load_file

    metrics = run(rows, base_dir, tmp_path, train=params(method="full", freeze=FreezeParams(embeddings=True)))
    assert metrics["steps"] == 2 and metrics["method"] == "full"
    before = load_file(base_dir / "model.safetensors")
    after = load_file(tmp_path / "run/model.safetensors")
    assert (after["model.embed_tokens.weight"] == before["model.embed_tokens.weight"]).all()   # frozen
    assert not (after["model.layers.0.mlp.up_proj.weight"] == before["model.layers.0.mlp.up_proj.weight"]).all()
    assert not (tmp_path / "run.ckpt").exists()   # checkpoints are removed after success
    assert (tmp_path / "run.live/plots/metrics/train/loss.tsv").exists()


def test_lora_trains_adapter_on_chosen_modules(rows, base_dir, tmp_path):
    train = params(lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]})
    metrics = run(rows, base_dir, tmp_path, train=train)
    config = json.loads((tmp_path / "run/adapter_config.json").read_text())
    assert config["target_modules"] == ["q_proj", "v_proj"] and config["r"] == 4
    assert metrics["trainable_params"] == 2 * 2 * (4 * 32 + 32 * 4)   # 2 layers x (q, v) x (A + B)
    assert "eval_loss" in metrics and metrics["best_step"] == 2


def test_qlora_loads_linear_layers_in_4bit_and_trains(rows, base_dir, tmp_path):
    from synthtune.model.base_model import bitsandbytes_available

    if not bitsandbytes_available():
        pytest.skip("bitsandbytes is not installed")
    from bitsandbytes.nn import Linear4bit

    from synthtune.model.methods import prepare_model

    train = params(method="qlora")
    model, _, peft_config = prepare_model(base_dir, ModelParams(), train)
    linears = {n: type(m) for n, m in model.named_modules() if n.endswith(("_proj",))}
    assert linears and all(t is Linear4bit for t in linears.values())
    assert model.config.quantization_config.bnb_4bit_quant_type == "nf4"
    assert model.config.quantization_config.bnb_4bit_use_double_quant is True
    assert peft_config is not None
    metrics = run(rows, base_dir, tmp_path, train=train, val=False)
    assert metrics["steps"] == 2 and (tmp_path / "run/adapter_model.safetensors").exists()


def test_qlora_without_bitsandbytes_is_one_clear_error(base_dir, monkeypatch):
    import synthtune.model.base_model
    from synthtune.core.errors import UserError
    from synthtune.model.methods import prepare_model

    monkeypatch.setattr(synthtune.model.base_model, "bitsandbytes_available", lambda: False)
    with pytest.raises(UserError, match="qlora needs bitsandbytes"):
        prepare_model(base_dir, ModelParams(), params(method="qlora"))


# ------------------------------------------------------------------ loss masking

def test_trainer_labels_cover_only_assistant_turns_and_never_padding(rows, base_dir, tmp_path, tiny_tokenizer):
    from synthtune.model.training import build_trainer

    length = lambda r: len(tiny_tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=False))  # noqa
    short = sorted(rows, key=length)[:8]   # none truncated: every assistant turn is whole in the batch
    assert length(short[-1]) <= MAX_LENGTH
    train = params(save_steps=0, batch_size=8, group_by_length=False)
    trainer, _ = build_trainer(short, [], base_dir, tmp_path, ModelParams(), train, 0, MAX_LENGTH)
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["attention_mask"] == 0).any()   # the batch is padded...
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()   # ...and padding is never trained on
    by_text = {tiny_tokenizer.apply_chat_template(r["messages"], tokenize=False): r for r in short}
    for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        real = ids[mask.bool()].tolist()
        row = by_text[tiny_tokenizer.decode(real)]
        trained = tiny_tokenizer.decode([t for t, lab in zip(ids.tolist(), labels.tolist()) if lab != -100])
        expected = "".join(m["content"] + "<|end|>" for m in row["messages"] if m["role"] == "assistant")
        assert trained == expected


def test_prompt_completion_rows_train_on_the_completion_only(base_dir, tmp_path, tiny_tokenizer):
    """qa/alpaca/seq2seq/syntod rows (prompt + completion): the labels are the completion's tokens."""
    from synthtune.model.training import build_trainer

    rows = [{"prompt": f"Question: what is step {i}?\nAnswer:", "completion": f" step {i} is easy<|end|>"}
            for i in range(4)]
    train = params(save_steps=0, batch_size=4, group_by_length=False)
    trainer, _ = build_trainer(rows, [], base_dir, tmp_path, ModelParams(), train, 0, MAX_LENGTH)
    batch = next(iter(trainer.get_train_dataloader()))
    trained = sorted(tiny_tokenizer.decode([t for t, lab in zip(ids.tolist(), labels.tolist()) if lab != -100])
                     for ids, labels in zip(batch["input_ids"], batch["labels"]))
    assert trained == sorted(r["completion"] for r in rows)


def test_text_rows_train_on_every_token(base_dir, tmp_path, tiny_tokenizer):
    from synthtune.model.training import build_trainer

    rows = [{"text": f"<|user|>\nhi {i}<|end|>\n<|assistant|>\nhello {i}<|end|>"} for i in range(4)]
    train = params(save_steps=0, batch_size=4, group_by_length=False)
    trainer, _ = build_trainer(rows, [], base_dir, tmp_path, ModelParams(), train, 0, MAX_LENGTH)
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"][batch["attention_mask"] == 1] != -100).all()


# ------------------------------------------------------------------ bad input

def test_missing_target_modules_are_named(rows, base_dir, tmp_path):
    with pytest.raises(ParamsError, match=r"target_modules \['c_attn'\] not in the model"):
        run(rows, base_dir, tmp_path, lora={"target_modules": ["q_proj", "c_attn"]})


def test_max_length_shorter_than_every_prompt(rows, base_dir, tmp_path):
    from synthtune.model.training import train_sft

    with pytest.raises(ParamsError, match="format.max_length 4 is not longer than the shortest prompt"):
        train_sft(rows[:4], [], base_dir, tmp_path / "o", tmp_path / "l", ModelParams(), params(), 0, max_length=4,
                  checkpoint_root=tmp_path / "c")


def test_best_checkpoint_needs_aligned_save_steps(rows, base_dir, tmp_path):
    with pytest.raises(ParamsError, match="save_steps .3. must be a multiple of train.eval_steps .2."):
        run(rows, base_dir, tmp_path, save_steps=3)


# ------------------------------------------------------------------ resume

def crash_after(step: int):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt(f"killed after step {step}")

    return Crash()


def test_killed_run_resumes_from_its_last_checkpoint_and_matches_an_uninterrupted_run(rows, base_dir, tmp_path):
    from safetensors.torch import load_file

    train = params(max_steps=6, eval_steps=2, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        run(rows, base_dir, tmp_path, "resumed", train=train, callbacks=[crash_after(4)])
    assert not (tmp_path / "resumed").exists()
    checkpoints = sorted(p.name for p in (tmp_path / "resumed.ckpt").glob("*/checkpoint-*"))
    assert "checkpoint-4" in checkpoints
    resumed = run(rows, base_dir, tmp_path, "resumed", train=train)
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 6
    fresh = run(rows, base_dir, tmp_path, "fresh", train=train)
    assert fresh["resumed_from_step"] == 0
    a = load_file(tmp_path / "resumed/adapter_model.safetensors")
    b = load_file(tmp_path / "fresh/adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert resumed["eval_loss"] == fresh["eval_loss"]
    steps = [int(line.split("\t")[0]) for line in
             (tmp_path / "resumed.live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 7))   # the curve covers the whole run, not just the resumed part


def test_checkpoint_of_other_params_is_never_resumed(rows, base_dir, tmp_path):
    train = params(max_steps=4, eval_steps=2, save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        run(rows, base_dir, tmp_path, train=train, callbacks=[crash_after(2)])
    (stale,) = list((tmp_path / "run.ckpt").iterdir())
    changed = run(rows, base_dir, tmp_path, train=train.model_copy(update={"lr": 1.0e-3}))
    assert changed["resumed_from_step"] == 0 and changed["steps"] == 4
    assert not stale.exists()


# ------------------------------------------------------------------ launcher

def test_launch_command(monkeypatch):
    from synthtune.model.training import launch_command

    assert launch_command(params(), ["a"]) is None
    cmd = launch_command(params(launcher="accelerate", num_processes=2), ["a", "b"])
    assert cmd[1:] == ["-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/ddp.yaml",
                       "--num_processes", "2", "-m", "stages.train", "a", "b"]
    monkeypatch.setenv("LOCAL_RANK", "0")   # already under the launcher: train in-process
    assert launch_command(params(launcher="accelerate"), ["a"]) is None
    with pytest.raises(ParamsError, match="accelerate_config"):
        monkeypatch.delenv("LOCAL_RANK")
        launch_command(params(launcher="accelerate", accelerate_config="nope.yaml"), [])


def test_model_modules_import_no_heavy_library():
    """Stages import synthtune.model at start-up (`--help` included): torch, TRL and PEFT load inside functions."""
    code = ("import sys\n"
            "import synthtune.model.base_model, synthtune.model.formats, synthtune.model.training\n"
            "from synthtune.model.training import launch_command, train_sft\n"
            "print(sorted(m for m in ('torch', 'trl', 'peft', 'transformers', 'sklearn', 'dvclive') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {name: load_config_from_file(str(ROOT / f"configs/accelerate/{name}.yaml")).distributed_type
             for name in ("ddp", "fsdp", "deepspeed_zero3")}
    assert [str(k).split(".")[-1] for k in kinds.values()] == ["MULTI_GPU", "FSDP", "DEEPSPEED"]


@pytest.mark.slow   # two processes through accelerate: `make test` runs it, `make test-fast` skips it
def test_train_stage_runs_two_process_ddp_through_accelerate(rows, base_dir, tmp_path):
    formatted = tmp_path / "formatted"
    formatted.mkdir()
    for name, part in (("train", rows[:16]), ("val", rows[16:20])):
        (formatted / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    all_params = yaml.safe_load((ROOT / "params.yaml").read_text())
    all_params["format"]["max_length"] = MAX_LENGTH
    all_params["train"].update(max_steps=2, batch_size=2, eval_steps=2, save_steps=2, logging_steps=1,
                               launcher="accelerate", num_processes=2, method="lora")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(all_params))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "stages.train", str(formatted), str(base_dir), str(tmp_path / "tuned"),
         str(tmp_path / "live"), str(tmp_path / "train.json"), "--params", str(tmp_path / "params.yaml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 0/2" in result.stderr and "process 1/2" in result.stderr   # both ranks trained
    metrics = json.loads((tmp_path / "train.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 2
    assert sorted(p.name for p in (tmp_path / "tuned").iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "chat_template.jinja", "tokenizer.json",
        "tokenizer_config.json"]
    assert result.stderr.count("trained: {") == 1   # metrics written once, by rank 0


def test_the_final_evaluation_reuses_the_logged_one_of_the_same_weights():
    """No second pass over val when the trainer already evaluated the weights the run ends with."""
    from types import SimpleNamespace

    from synthtune.model.training import final_evaluation

    class Trainer:
        def __init__(self, load_best, best, step):
            self.args = SimpleNamespace(load_best_model_at_end=load_best)
            self.state = SimpleNamespace(best_model_checkpoint=best, global_step=step, log_history=[
                {"loss": 1.0, "step": 32}, {"eval_loss": 0.5, "step": 32}, {"eval_loss": 0.7, "step": 64}])
            self.evaluated = 0

        def evaluate(self):
            self.evaluated += 1
            return {"eval_loss": 0.9}

    last = Trainer(False, None, 64)
    assert final_evaluation(last)["eval_loss"] == 0.7 and last.evaluated == 0
    best = Trainer(True, "/ckpt/checkpoint-32", 64)          # the reloaded best model: its logged evaluation
    assert final_evaluation(best)["eval_loss"] == 0.5 and best.evaluated == 0
    unlogged = Trainer(False, None, 70)                       # stopped between evaluations: evaluate now
    assert final_evaluation(unlogged)["eval_loss"] == 0.9 and unlogged.evaluated == 1


# ------------------------------------------------------------------ the loss on labelled positions

def _batch_and_trainer(rows, base_dir, tmp_path):
    from synthtune.model.training import build_trainer

    train = params(method="full", save_steps=0, batch_size=8, group_by_length=False)
    trainer, _ = build_trainer(rows[:8], rows[8:16], base_dir, tmp_path, ModelParams(), train, 0, MAX_LENGTH)
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()
    return trainer, batch


def test_the_loss_projects_only_labelled_positions_and_equals_the_models_own_loss(rows, base_dir, tmp_path):
    """The head sees one row per trained next token; the loss and its gradients are the model's own."""
    import torch

    trainer, batch = _batch_and_trainer(rows, base_dir, tmp_path)
    model = trainer.model.train()
    seen = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(out.shape))
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    for items in (None, torch.tensor(labelled + 7)):      # gradient accumulation counts the tokens itself
        model.zero_grad()
        ours = trainer.compute_loss(model, dict(batch), num_items_in_batch=items)
        ours.backward()
        ours_grad = model.get_input_embeddings().weight.grad.clone()
        model.zero_grad()
        kwargs = {} if items is None else {"num_items_in_batch": items}
        reference = model(**batch, use_cache=False, **kwargs).loss
        reference.backward()
        assert torch.allclose(ours, reference, rtol=1e-5, atol=1e-6)
        assert torch.allclose(ours_grad, model.get_input_embeddings().weight.grad, rtol=1e-4, atol=1e-7)
    hook.remove()
    vocab = model.config.vocab_size
    assert seen[0] == (labelled, vocab)                          # ours: the labelled positions only
    assert seen[1] == (*batch["input_ids"].shape, vocab)         # the model's own: every position


def test_evaluation_metrics_match_trls_own_path(rows, base_dir, tmp_path):
    """Eval loss, token accuracy and entropy from the labelled logits equal TRL's chunked LM head's."""
    import torch
    from trl import SFTTrainer

    trainer, batch = _batch_and_trainer(rows, base_dir, tmp_path)
    trainer.model.eval()
    with torch.no_grad():       # as Trainer.prediction_step
        ours = trainer.compute_loss(trainer.model, dict(batch)).item()
        ours_metrics = {k: v.pop() for k, v in trainer._metrics["eval"].items()
                        if k in ("entropy", "mean_token_accuracy")}
        theirs = SFTTrainer.compute_loss(trainer, trainer.model, dict(batch)).item()
    theirs_metrics = {k: trainer._metrics["eval"][k].pop() for k in ours_metrics}
    assert set(ours_metrics) == {"entropy", "mean_token_accuracy"}
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert ours_metrics == pytest.approx(theirs_metrics, rel=1e-4)
