"""Format the train/val/test splits: render, fit and count every record with the chosen rendering.

Every split is rendered the same way; only the train split supplies few-shot examples and the
SynTOD intent list, so nothing of val or test leaks into another row's prompt. Records are never
dropped silently: each skip or drop has a count in the metrics (`<split>_<count>`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from synthtune.core.config import FormatParams
from synthtune.core.errors import ParamsError
from synthtune.model.formats.annotations import to_chat
from synthtune.model.formats.few_shot import ShotIndex
from synthtune.model.formats.length_stats import percentile
from synthtune.model.formats.renderings import SplitState, lists_intents, rendering_for


@dataclass
class Formatted:
    rows: dict[str, list[dict]] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, list[int]] = field(default_factory=dict)
    intents: dict[str, list[str]] = field(default_factory=dict)   # syntod: per source


def _format_split(records, tokenizer, params: FormatParams, shot_index=None, intents=None):
    rendering = rendering_for(params.template)
    state = SplitState(tokenizer, params, shot_index, intents or {})
    counts, rows = state.counts, []
    # the metric keys keep this order in metrics/format.json: fixed counts first, the others as they occur
    counts.update({"dropped_too_long": 0, "truncated": 0})
    if rendering.prompt_completion:
        counts["prompt_boundary_mismatch"] = 0
    for record in records:
        if record.get("meta", {}).get("prompt_only"):
            counts["skipped_prompt_only"] += 1    # nothing to train on or score against
            continue
        if record.get("messages") is None and not rendering.reads_raw_text:
            counts["skipped_text_records"] += 1   # no turns to render as a prompt
            continue
        example = to_chat(record) if record.get("messages") is not None else None
        rows += rendering.rows(example, record, state)
    if state.prompts and params.max_length < min(state.prompts):
        raise ParamsError(f"format.max_length: {params.max_length} tokens is shorter than the shortest prompt "
                          f"({min(state.prompts)} tokens); raise format.max_length")
    lengths = state.lengths
    ordered = sorted(lengths)
    counts.update({"examples": len(rows), "tokens": sum(lengths), "max_tokens": max(lengths, default=0),
                   "p50_tokens": percentile(ordered, 0.5), "p95_tokens": percentile(ordered, 0.95)})
    if params.few_shot_k == 0:
        counts.pop("few_shot_rows", None)   # the chat builder counts it even with shots off
    return rows, dict(counts), lengths


def format_split(records: list[dict], tokenizer, params: FormatParams) -> tuple[list[dict], dict]:
    """Render and length-fit one split on its own (no few-shot pool; SynTOD intents from these records)."""
    rows, counts, _ = _format_split(records, tokenizer, params, None, syntod_intents(records, params))
    return rows, counts


def syntod_intents(train: Sequence[dict], params: FormatParams) -> dict[str, list[str]]:
    """The allowed intents (SynTOD header, chat instruction), per source: every intent annotated in train.

    Empty for renderings without an intent header.
    """
    found: dict[str, set[str]] = {}
    for record in train if lists_intents(rendering_for(params.template), params) else ():
        for message in record.get("messages") or []:
            if message["role"] == "user" and "intent" in (message.get("annotations") or {}):
                found.setdefault(record["source"], set()).add(message["annotations"]["intent"])
    return {source: sorted(intents) for source, intents in sorted(found.items())}


def format_splits(splits: dict[str, list[dict]], tokenizer, params: FormatParams) -> Formatted:
    """Render every split; only the train split supplies shots and the SynTOD intent list."""
    rendering = rendering_for(params.template)
    if params.few_shot_k and not rendering.takes_shots:
        raise ParamsError(f"format.few_shot_k: template {rendering.name!r} has no prompt to put shots in; "
                          "set it to 0")
    train = [r for r in splits.get("train", []) if r.get("messages") and not r.get("meta", {}).get("prompt_only")]
    intents = syntod_intents(train, params)
    shot_index = ShotIndex([to_chat(r) for r in train]) if params.few_shot_k else None
    result = Formatted(intents=intents)
    for split, records in splits.items():
        rows, counts, lengths = _format_split(records, tokenizer, params, shot_index, intents)
        result.rows[split], result.lengths[split] = rows, lengths
        result.metrics.update({f"{split}_{key}": value for key, value in counts.items()})
    return result


def render_records(records: list[dict], tokenizer, info: dict) -> list[dict]:
    """Rows for new records rendered as a trained model's format.json says (no shots: no train pool here).

    What predict, RAG or a serving script use for inputs that did not come through the format stage.
    """
    params = FormatParams(template=rendering_for(info.get("template", "chat")).name, max_length=info["max_length"],
                          overflow=info["overflow"], instruction=info.get("instruction", False))
    rows, _, _ = _format_split(records, tokenizer, params, None, info.get("intents") or {})
    return rows
