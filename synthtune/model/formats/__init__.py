"""Formats: render canonical records into the training rows TRL consumes, and the prompts predict uses.

`format.template` (params.yaml) names the rendering (renderings.RENDERINGS); every rendering
writes what TRL's SFTTrainer reads as is:

    chat      {"messages"}             the tokenizer's chat template; loss on its `{% generation %}`
                                       spans (assistant_only_loss)
    qa        {"prompt", "completion"} `Question: …\\nAnswer:` + ` answer`            (completion_only_loss)
    alpaca    {"prompt", "completion"} Alpaca instruction/input/response; a record with
                                       `meta.context` gets the "Use the following pieces of context" variant
    seq2seq   {"prompt", "completion"} `<Role user>…` / `<Role bot>…` lines (as synthtune.generate.loaders.to_seq2seq)
    syntod    {"prompt", "completion"} SynTOD text: `### HUMAN: … ## {state}` / `### ASSISTANT: …`
    text      {"text"}                 raw text for continued pretraining (loss on every token)

Chat rows hold a whole conversation; prompt/completion rows one assistant turn each (the gold
history is the prompt). Every row carries `id` (the record's), `source`, `group` and `gold` (the
annotated turns it can be scored on). Prediction uses the very same rendering:
`render_prompt(row, turn, tokenizer)` gives the token ids of a gold turn's prompt, a token-identical
prefix of what TRL trains on. `data/formatted/format.json` (`manifest`) records the rendering and
its settings so the trained model keeps them.

Modules: annotations (the state line), prompts (teacher-forced prompts shared with predict),
layouts (prompt/completion and raw-text layouts), few_shot, length_fit, renderings (the registry
and row builders), splits (format_splits), manifest, length_stats, pretraining (the tiny base
model's corpus). The names below are what callers import from `synthtune.model.formats`.
"""
from synthtune.model.formats.annotations import SYNTOD_ASSISTANT, annotation_line, parse_annotation, to_chat
from synthtune.model.formats.few_shot import ShotIndex, chat_with_shots, with_shots
from synthtune.model.formats.layouts import CONTEXT_INSTRUCTION, Exchange, Spec, text_row, turn_specs
from synthtune.model.formats.length_fit import fit_length, fit_spec, fit_text
from synthtune.model.formats.length_stats import length_histogram, percentile
from synthtune.model.formats.manifest import MANIFEST_VERSION, manifest
from synthtune.model.formats.pretraining import plain_text, pretraining_corpus
from synthtune.model.formats.prompts import (first_prompt_length, prompt_messages, prompt_text, render_prompt,
                                             text_ids, token_length, with_eos)
from synthtune.model.formats.renderings import RENDERINGS, Rendering, register, rendering_for
from synthtune.model.formats.splits import Formatted, format_split, format_splits, render_records, syntod_intents

RENDERING_NAMES = tuple(RENDERINGS)   # the values format.template accepts
PROMPT_COMPLETION_RENDERINGS = tuple(name for name, r in RENDERINGS.items() if r.prompt_completion)

__all__ = [
    "CONTEXT_INSTRUCTION", "MANIFEST_VERSION", "PROMPT_COMPLETION_RENDERINGS", "RENDERINGS", "RENDERING_NAMES",
    "SYNTOD_ASSISTANT", "Exchange", "Formatted", "Rendering", "ShotIndex", "Spec", "annotation_line",
    "chat_with_shots", "first_prompt_length", "fit_length", "fit_spec", "fit_text", "format_split",
    "format_splits", "length_histogram", "manifest", "parse_annotation", "percentile", "plain_text",
    "pretraining_corpus", "prompt_messages", "prompt_text", "register", "render_prompt", "render_records",
    "rendering_for", "syntod_intents", "text_ids", "text_row", "to_chat", "token_length", "turn_specs",
    "with_eos", "with_shots",
]
