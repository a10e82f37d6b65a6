"""The params sections of the handover phase: export (the merged model), cards, report.

Part of synthtune.core.config (which re-exports every class here); the same rule holds: each
default equals the value the shipped params.yaml gives it.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from synthtune.core.params_base import Section


class ExportParams(Section):
    """synthtune.handover.export: the adapter merged into its base, saved for plain `from_pretrained`."""
    # The saved weights' dtype. Fixed, never `auto`: the exported bytes must not depend on the machine.
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    probe_rows: int = Field(4, ge=1)          # val rows whose logits base+adapter and merged must match on
    tolerance: float = Field(1.0e-3, gt=0)    # max |logit difference| of the fp32 merge (else the stage fails)


class CardsParams(Section):
    """synthtune.handover: the model card (models/merged/README.md) and dataset card (data/dataset/README.md)."""
    model_id: str = Field("your-org/synthtune-smollm2-135m-lora", pattern=r"^[\w.-]+/[\w.-]+$")  # hub repo ids in
    dataset_id: str = Field("your-org/synthtune-sft-data", pattern=r"^[\w.-]+/[\w.-]+$")        # the cards' commands
    license: str | None = None                # the tuned model's licence; null: the base model's
    tags: list[str] = Field(default_factory=lambda: ["synthtune", "sft", "lora", "synthetic-data", "dvc"])


class ReportParams(Section):
    """synthtune.handover.report: reports/index.html, the page a person opens first."""
    model: str = "tuned"                      # whose predictions give the best and worst turns
    examples: int = Field(3, ge=0)            # best and worst turns shown (each)
