"""The merged export loads with plain from_pretrained and gives base+adapter's logits; a bad merge saves nothing."""

import pytest
import torch

from synthtune.core.errors import UserError
from synthtune.core.handover_params import ExportParams
from synthtune.handover.export import export_merged, logits_of, max_abs_difference, probe_texts

ROWS = [{"messages": [{"role": "user", "content": f"I want a recipe with {x}"},
                      {"role": "assistant", "content": f"Here is one with {x}."}]} for x in ("eggs", "rice", "leeks")]


@pytest.fixture(scope="module")
def base_dir(tiny_base_dir):
    return tiny_base_dir


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, base_dir, tiny_tokenizer):
    """A LoRA adapter on every linear layer with non-zero B (as after training), saved like the train stage."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("tuned")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base_dir)),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save_pretrained(str(path))
    tiny_tokenizer.save_pretrained(path)
    return path


def reference_logits(base_dir, adapter_dir, tokenizer, texts):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    plain = logits_of(base, tokenizer, texts)
    return plain, logits_of(PeftModel.from_pretrained(base, str(adapter_dir)).eval(), tokenizer, texts)


def test_merged_model_loads_plainly_and_matches_base_plus_adapter(base_dir, adapter_dir, tiny_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    metrics = export_merged(base_dir, adapter_dir, ROWS, out, ExportParams(dtype="float32"))
    assert metrics["method"] == "lora_merged" and metrics["probe_rows"] == 3
    assert metrics["top1_agreement_cast"] == 1.0            # float32 export: no cast
    assert metrics["max_abs_logit_diff"] < 1e-4
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").exists()
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()    # no peft, no base folder
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    texts = probe_texts(ROWS, tokenizer, 3)
    plain, expected = reference_logits(base_dir, adapter_dir, tiny_tokenizer, texts)
    assert max_abs_difference(plain, expected) > 1e-2          # the adapter really changes the model
    assert max_abs_difference(logits_of(merged, tokenizer, texts), expected) < 1e-4


def test_bf16_export_is_saved_in_bf16_within_a_cast_tolerance(base_dir, adapter_dir, tmp_path):
    from safetensors import safe_open

    metrics = export_merged(base_dir, adapter_dir, ROWS, tmp_path / "m", ExportParams(dtype="bfloat16"))
    with safe_open(str(tmp_path / "m/model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.bfloat16}
    assert metrics["max_abs_logit_diff"] < 1e-4 <= metrics["max_abs_logit_diff_cast"] < 0.5
    assert 0.5 < metrics["top1_agreement_cast"] <= 1.0


def test_a_wrong_merge_stops_the_export_and_saves_nothing(base_dir, adapter_dir, tmp_path, monkeypatch):
    from peft.tuners.lora import LoraModel

    monkeypatch.setattr(LoraModel, "merge_and_unload", lambda self, **kw: self.unload())   # drops the adapter
    out = tmp_path / "merged"
    with pytest.raises(UserError, match=r"merged logits differ from base\+adapter by .* > export\.tolerance"):
        export_merged(base_dir, adapter_dir, ROWS, out, ExportParams())
    assert not out.exists()


def test_a_full_fine_tune_is_resaved_with_identical_logits(base_dir, tmp_path):
    metrics = export_merged(base_dir, base_dir, ROWS, tmp_path / "full", ExportParams(dtype="float32"))
    assert metrics["method"] == "full" and metrics["max_abs_logit_diff"] == 0.0


def test_export_without_val_rows_is_one_error(base_dir, adapter_dir, tmp_path):
    with pytest.raises(UserError, match="val split is empty"):
        export_merged(base_dir, adapter_dir, [], tmp_path / "m", ExportParams())
