"""The base of every params section (synthtune.core.config): strict, frozen, no unknown keys."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Dtype = Literal["auto", "bfloat16", "float16", "float32"]   # model.dtype, train.dtype (synthtune.model.precision)
