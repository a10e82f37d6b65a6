"""The fine-tuning methods of `train.method`: full (with layer freezing), LoRA and QLoRA.

`prepare_model` loads the base model the way the method needs it; the trainer then wraps it
(TRL applies the LoRA config itself). Freezing follows the seed SFT project's flags, by
parameter name, so it works on any decoder whose modules have the usual names.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from synthtune.core.config import FreezeParams, ModelParams, TrainParams
from synthtune.core.errors import ParamsError
from synthtune.model.base_model import load_base

log = logging.getLogger(__name__)


def _category(name: str) -> str:
    """The freezing category of a parameter name: embeddings, norms, attention, mlp or other."""
    lowered = name.lower()
    if re.search(r"(^|\.)(embed_tokens|embed_positions|wte|wpe|word_embeddings|position_embeddings)\.", lowered):
        return "embeddings"
    if re.search(r"(norm|ln_|layernorm|\.ln\d*\.|ln_f)", lowered):
        return "norms"
    if re.search(r"(self_attn|attention|\.attn\.|q_proj|k_proj|v_proj|o_proj|c_attn)", lowered):
        return "attention"
    if re.search(r"(\.mlp\.|feed_forward|\.ffn\.|gate_proj|up_proj|down_proj|c_fc|fc1|fc2)", lowered):
        return "mlp"
    return "other"


def _never_frozen(name: str, keep: list[int | str]) -> bool:
    for item in keep:
        if isinstance(item, int):
            if re.search(rf"\.(layers|h|blocks|layer)\.{item}\.", name):
                return True
        elif item in name:
            return True
    return False


def apply_freezing(model, freeze: FreezeParams) -> dict[str, int]:
    """Freeze parameters by category (the seed SFT flags); returns trainable parameter counts per category.

    A parameter whose name matches `layers_not_to_freeze` (a layer index, or a substring of the
    name) stays trainable; otherwise embeddings, norms, attention, MLP and anything else follow
    their flag. Tied weights (the tiny model's LM head) follow the embeddings.
    """
    trainable: dict[str, int] = {}
    for name, param in model.named_parameters():
        category = _category(name)
        frozen = getattr(freeze, category) and not _never_frozen(name, freeze.layers_not_to_freeze)
        param.requires_grad_(not frozen)
        trainable[category] = trainable.get(category, 0) + (0 if frozen else param.numel())
    if not any(trainable.values()):
        raise ParamsError("params.yaml: train.freeze freezes every parameter; nothing would be trained")
    return trainable


def check_target_modules(model, target_modules: str | list[str]) -> None:
    """Every LoRA target module must exist in the model (PEFT semantics: exact name or `.name` suffix)."""
    names = [name for name, _ in model.named_modules()]
    if target_modules == "all-linear":
        return
    if isinstance(target_modules, str):
        if not any(re.fullmatch(target_modules, name) for name in names):
            raise ParamsError(f"params.yaml: train.lora.target_modules {target_modules!r} matches no module "
                              f"of the model")
        return
    leaves = sorted({name.rsplit(".", 1)[-1] for name in names if name})
    missing = [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ParamsError(f"params.yaml: train.lora.target_modules {missing} not in the model "
                          f"(its modules: {', '.join(m for m in leaves if not m.isdigit())})")


def lora_config(train: TrainParams):
    from peft import LoraConfig

    return LoraConfig(r=train.lora.r, lora_alpha=train.lora.alpha, lora_dropout=train.lora.dropout,
                      target_modules=train.lora.target_modules, task_type="CAUSAL_LM", bias="none")


def prepare_model(base_dir: Path, model: ModelParams, train: TrainParams):
    """Load the base model for `train.method`; returns (model, tokenizer, peft_config or None).

    full: freezing flags applied; lora: a LoRA config for the trainer; qlora: the base loaded in
    4-bit (bitsandbytes Linear4bit), prepared for k-bit training, plus the LoRA config.
    """
    lm, tokenizer = load_base(base_dir, model.trust_remote_code,
                              qlora=train.qlora if train.method == "qlora" else None)
    if train.method == "full":
        counts = apply_freezing(lm, train.freeze)
        log.info("full fine-tuning, trainable parameters per category: %s", counts)
        return lm, tokenizer, None
    check_target_modules(lm, train.lora.target_modules)
    if train.method == "qlora":
        from peft import prepare_model_for_kbit_training

        lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=False)
    return lm, tokenizer, lora_config(train)
