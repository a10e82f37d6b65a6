"""The merged export: a LoRA/QLoRA adapter folded into its base, saved for plain `from_pretrained`.

Serving stacks (vLLM, TGI, llama.cpp's converter) load one ordinary transformers folder faster and
more simply than a base plus an adapter. The merge is done in fp32 and checked before anything is
saved: the merged model's logits must match base+adapter's on a few real val rows within
`export.tolerance`, so a broken merge (wrong base, a PEFT bug, a dtype slip) stops the stage instead
of reaching a user. Only then are the weights cast to `export.dtype` and written.
A full fine-tune has no adapter: its weights are re-saved in the same layout.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from synthtune.core.errors import UserError
from synthtune.core.handover_params import ExportParams

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
PROBE_TOKENS = 128       # a probe row's length cap: enough to cover system, user and assistant tokens


def probe_texts(rows: list[dict], tokenizer, n: int) -> list[str]:
    """The first `n` rows as the text the model is trained on (chat template for messages rows)."""
    texts = []
    for row in rows[:n]:
        if "messages" in row:
            texts.append(tokenizer.apply_chat_template(row["messages"], tokenize=False))
        elif "text" in row:
            texts.append(row["text"])
        else:
            texts.append(f"{row.get('prompt', '')}{row.get('completion', '')}")
    return texts


def logits_of(model, tokenizer, texts: list[str]):
    """Logits of each text (one at a time: no padding, so nothing but the weights differs)."""
    import torch

    out = []
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=PROBE_TOKENS).input_ids
            out.append(model(input_ids=ids).logits.float())
    return out


def max_abs_difference(a: list, b: list) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def top1_agreement(a: list, b: list) -> float:
    """Share of token positions where both logit sets pick the same next token (what greedy decoding sees)."""
    same = sum(int((x.argmax(-1) == y.argmax(-1)).sum()) for x, y in zip(a, b))
    return same / sum(x.shape[-2] for x in a)


def export_merged(base_dir: Path, tuned_dir: Path, probe_rows: list[dict], out_dir: Path,
                  params: ExportParams) -> dict:
    """Write the merged model to `out_dir`; returns the export metrics (method, logit differences, size)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from synthtune.model.base_model import load_base
    from synthtune.model.precision import torch_dtype

    tuned_dir, out_dir = Path(tuned_dir), Path(out_dir)
    if not probe_rows:
        raise UserError("export: the val split is empty, so the merged model cannot be checked; "
                        "raise prepare.val_fraction")
    tokenizer = AutoTokenizer.from_pretrained(str(tuned_dir))
    texts = probe_texts(probe_rows, tokenizer, params.probe_rows)
    adapter = (tuned_dir / "adapter_config.json").exists()
    if adapter:
        from peft import PeftModel

        base, _ = load_base(base_dir, dtype="float32")
        model = PeftModel.from_pretrained(base, str(tuned_dir)).eval()
        reference = logits_of(model, tokenizer, texts)
        model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(tuned_dir), dtype=torch.float32).eval()
        reference = logits_of(model, tokenizer, texts)
    merged = logits_of(model, tokenizer, texts)
    difference = max_abs_difference(reference, merged)
    if difference > params.tolerance:
        raise UserError(f"export: merged logits differ from base+adapter by {difference:.3g} "
                        f"> export.tolerance {params.tolerance:g}; the merge is wrong, nothing was saved")
    model = model.to(torch_dtype(params.dtype))
    cast = logits_of(model, tokenizer, texts)
    cast_difference, cast_agreement = max_abs_difference(reference, cast), top1_agreement(reference, cast)
    if getattr(model.config, "quantization_config", None) is not None:   # a QLoRA base: the merge is dense
        del model.config.quantization_config
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (tuned_dir / name).exists():
            shutil.copy2(tuned_dir / name, out_dir / name)
    if (tuned_dir / "format.json").exists():     # the prompt layout predict used: serve it the same way
        shutil.copy2(tuned_dir / "format.json", out_dir / "format.json")
    size = sum(f.stat().st_size for f in out_dir.glob("*.safetensors"))
    log.info("merged %s into %s: max |logit diff| %.2e fp32, %.2e %s", tuned_dir, out_dir, difference,
             cast_difference, params.dtype)
    return {"method": "lora_merged" if adapter else "full", "dtype": params.dtype, "probe_rows": len(texts),
            "max_abs_logit_diff": float(f"{difference:.3g}"), "max_abs_logit_diff_cast": float(f"{cast_difference:.3g}"),
            "top1_agreement_cast": round(cast_agreement, 4),
            "n_params": sum(p.numel() for p in model.parameters()), "weights_bytes": size}

