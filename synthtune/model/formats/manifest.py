"""data/formatted/format.json: how the rows were rendered, so the trained model keeps its format.

train copies it next to the model; predict, RAG and `render_records` render new inputs from it.
"""
from __future__ import annotations

from synthtune.core.config import FormatParams
from synthtune.model.formats.renderings import lists_intents, rendering_for

MANIFEST_VERSION = 1


def manifest(params: FormatParams, tokenizer, intents: dict[str, list[str]] | None = None) -> dict:
    """The format params, the row fields and loss of the rendering, and the EOS token rows end with."""
    rendering = rendering_for(params.template)
    out = {"version": MANIFEST_VERSION, **params.model_dump(), "fields": list(rendering.fields),
           "loss": rendering.loss, "eos_token": tokenizer.eos_token}
    if lists_intents(rendering, params):
        out["intents"] = dict(intents or {})   # the header / instruction of each source's prompts
    return out
