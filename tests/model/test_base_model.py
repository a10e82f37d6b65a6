"""Base models: hub ids fail fast and clearly offline, pinned manifests, quantization config, trust_remote_code."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthtune.core.config import ModelParams, QloraParams
from synthtune.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_hub_id_while_offline_is_one_clear_error(tmp_path):
    from synthtune.model.base_model import resolve_hub_model

    with pytest.raises(UserError, match="is a hub id but HF_HUB_OFFLINE=1"):
        resolve_hub_model(tmp_path / "base", ModelParams(name="someone/some-model"))
    assert not (tmp_path / "base").exists()


def test_base_model_stage_with_hub_id_offline_exits_2_with_one_line(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["name"] = "someone/some-model"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, "-m", "stages.base_model", str(tmp_path / "pool.jsonl"), str(tmp_path / "base"),
         str(tmp_path / "m.json"), "--params", str(tmp_path / "params.yaml")],
        cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=40)   # offline must not retry the network
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "someone/some-model" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert "Traceback" not in result.stderr


def test_pinned_hub_model_not_in_cache_offline_is_one_clear_error(tmp_path):
    from synthtune.model.base_model import MANIFEST, load_base

    (tmp_path / MANIFEST).write_text(json.dumps({"name": "someone/some-model", "revision": "0" * 40,
                                                 "trust_remote_code": False}))
    with pytest.raises(UserError, match=r"someone/some-model.*HF_HUB_OFFLINE=1 and it is not in the local cache"):
        load_base(tmp_path)


def test_quantization_config_is_nf4_double_quant(monkeypatch):
    import torch

    import synthtune.model.base_model
    from synthtune.model.base_model import bitsandbytes_available, quantization_config

    if not bitsandbytes_available():
        pytest.skip("bitsandbytes is not installed")
    config = quantization_config(QloraParams())
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config(QloraParams(compute_dtype="float32")).bnb_4bit_compute_dtype == torch.float32
    monkeypatch.setattr(synthtune.model.base_model, "bitsandbytes_available", lambda: False)
    with pytest.raises(UserError, match="qlora needs bitsandbytes"):
        quantization_config(QloraParams())


def test_trust_remote_code_is_off_by_default():
    assert ModelParams().trust_remote_code is False
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["model"]["trust_remote_code"] is False


def test_tiny_base_loads_from_its_manifest(tmp_path, tiny_model, tiny_tokenizer):
    from synthtune.model.base_model import MANIFEST, load_base

    tiny_model.save_pretrained(tmp_path, safe_serialization=True)
    tiny_tokenizer.save_pretrained(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"name": "tiny", "path": "."}))
    model, tokenizer = load_base(tmp_path)
    assert model.config.hidden_size == tiny_model.config.hidden_size
    assert tokenizer.pad_token == "<|pad|>" and (tmp_path / "model.safetensors").exists()
