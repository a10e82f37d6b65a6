"""model.dtype / train.dtype `auto`: bf16 only where the hardware runs it natively."""
import pytest

from synthtune.core.config import TrainParams
from synthtune.core.errors import ParamsError
from synthtune.model import precision
from synthtune.model.precision import checked_dtype, cpu_flags, resolve_dtype


def test_auto_follows_the_cpu_instruction_set_and_explicit_names_pass_through():
    assert resolve_dtype("auto", cuda=False, flags=frozenset({"avx2", "avx512f", "avx512_bf16"})) == "bfloat16"
    assert resolve_dtype("auto", cuda=False, flags=frozenset({"avx2", "amx_bf16"})) == "bfloat16"
    # AVX512F alone emulates bf16 (measured 2x slower than fp32 on such a CPU): fp32
    assert resolve_dtype("auto", cuda=False, flags=frozenset({"avx2", "avx512f"})) == "float32"
    assert resolve_dtype("auto", cuda=False, flags=frozenset()) == "float32"
    for name in ("float32", "bfloat16", "float16"):
        assert resolve_dtype(name, cuda=False, flags=frozenset()) == name
    assert isinstance(cpu_flags(), frozenset)


def test_train_dtype_reaches_the_trainer_config(tmp_path, monkeypatch):
    from synthtune.model.training import sft_config

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))   # any CI CPU

    bf16 = sft_config(TrainParams(dtype="bfloat16", max_steps=1), str(tmp_path), 0, 64, False)
    fp32 = sft_config(TrainParams(dtype="float32", max_steps=1), str(tmp_path), 0, 64, False)
    assert bf16.bf16 and not bf16.fp16 and not fp32.bf16 and not fp32.fp16
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ParamsError, match="train.dtype float16 needs a CUDA device"):
            sft_config(TrainParams(dtype="float16", max_steps=1), str(tmp_path), 0, 64, False)


def test_base_and_tuned_load_in_the_asked_dtype(tmp_path, tiny_model, tiny_tokenizer):
    import json

    import torch

    from synthtune.model.base_model import MANIFEST, load_base, load_tuned

    tiny_model.save_pretrained(tmp_path / "base")
    tiny_tokenizer.save_pretrained(tmp_path / "base")
    (tmp_path / "base" / MANIFEST).write_text(json.dumps({"name": "tiny", "path": "."}))
    model, _ = load_base(tmp_path / "base", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    model, _ = load_tuned(tmp_path / "base", tmp_path / "base", dtype="float32")   # full weights
    assert next(model.parameters()).dtype == torch.float32


def test_explicit_bf16_where_the_hardware_only_emulates_it_is_one_line_naming_the_key(tmp_path, monkeypatch):
    emulating = frozenset({"avx2", "avx512f"})
    with pytest.raises(ParamsError, match=r"^params.yaml: train.dtype bfloat16: this CPU has no native bf16 "
                                          r"\(avx512_bf16 or amx_bf16 not in /proc/cpuinfo.*; use auto or float32$"):
        checked_dtype("bfloat16", "train.dtype", cuda=False, flags=emulating)
    # auto and fp32 stay fine there; bf16 passes where it is native
    assert checked_dtype("auto", "train.dtype", cuda=False, flags=emulating) == "float32"
    assert checked_dtype("float32", "train.dtype", cuda=False, flags=emulating) == "float32"
    assert checked_dtype("bfloat16", "model.dtype", cuda=False, flags=frozenset({"amx_bf16"})) == "bfloat16"
    import torch

    if torch.cuda.is_available():
        return
    # the trainer config (train.dtype) and the predict/rag backend (model.dtype) both check
    from synthtune.evaluate.predict import ModelSpec, open_backend
    from synthtune.model.training import sft_config

    monkeypatch.setattr(precision, "cpu_flags", lambda: emulating)
    with pytest.raises(ParamsError, match="^params.yaml: train.dtype bfloat16: "):
        sft_config(TrainParams(dtype="bfloat16", max_steps=1), str(tmp_path), 0, 64, False)
    with pytest.raises(ParamsError, match="^params.yaml: model.dtype bfloat16: "):
        with open_backend(ModelSpec("base"), tmp_path / "no-base", "hf", dtype="bfloat16"):
            pass
