"""The rendering registry: `format.template` name -> how a record becomes training rows.

Each `Rendering` says which row fields TRL trains on, where the loss goes (both recorded in
format.json) and how rows are built, fitted and counted. Three kinds exist:

    chat                       one row per conversation, `messages` in the tokenizer's chat template
    prompt/completion layouts  one row per assistant turn (layouts.py: qa, alpaca, seq2seq, syntod)
    text                       one row per conversation or raw-text record, loss on every token

Adding a prompt/completion format is one layout function in layouts.py plus one `register` line here.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from synthtune.core.config import FormatParams
from synthtune.core.errors import ParamsError
from synthtune.model.formats.few_shot import ShotIndex, chat_with_shots, with_shots
from synthtune.model.formats.instruction import with_instruction
from synthtune.model.formats.layouts import (Layout, render_alpaca, render_qa, render_seq2seq, render_syntod,
                                             turn_specs)
from synthtune.model.formats.length_fit import cannot_fit, chat_cannot_fit, fit_length, fit_spec, fit_text
from synthtune.model.formats.prompts import first_prompt_length, text_ids, token_length, with_eos


@dataclass
class SplitState:
    """What the row builders of one split share: settings, the shot pool, and the counts they add to."""
    tokenizer: object
    params: FormatParams
    shot_index: ShotIndex | None
    intents: dict[str, list[str]]                          # syntod header / chat instruction, per source
    counts: Counter = field(default_factory=Counter)
    lengths: list[int] = field(default_factory=list)       # tokens of every written row
    prompts: list[int] = field(default_factory=list)       # tokens of every bare (shot-less) first prompt

    @property
    def shots_on(self) -> bool:
        return self.shot_index is not None and bool(self.params.few_shot_k)


RowBuilder = Callable[[dict | None, dict, SplitState], list[dict]]   # (chat example or None, record, state)


@dataclass(frozen=True)
class Rendering:
    """How one `format.template` value renders records; `fields` and `loss` go into format.json."""
    name: str
    fields: tuple[str, ...]          # the row fields TRL's SFTTrainer reads
    loss: str                        # which tokens are trained: assistant_only_loss, completion_only_loss, all_tokens
    rows: RowBuilder
    reads_raw_text: bool = False     # records with `text` and no turns are rendered too (else skipped, counted)
    takes_shots: bool = True         # has a prompt to put few-shot examples in
    prompt_completion: bool = False  # counts prompt_boundary_mismatch (TRL's completion mask starts at the split)
    intent_header: bool = False      # prompts list every train intent of the source (format.json "intents")


RENDERINGS: dict[str, Rendering] = {}   # in the order params.yaml documents them


def register(rendering: Rendering) -> Rendering:
    RENDERINGS[rendering.name] = rendering
    return rendering


def rendering_for(name: str) -> Rendering:
    """The rendering named by `format.template`; an unknown name is a params error that names the key."""
    if name not in RENDERINGS:
        raise ParamsError(f"format.template: unknown template {name!r} (known: {', '.join(RENDERINGS)})")
    return RENDERINGS[name]


# ---------------------------------------------------------------- row builders

def lists_intents(rendering: Rendering, params: FormatParams) -> bool:
    """Whether rows name their source's train intents: the SynTOD header, or the chat instruction."""
    return rendering.intent_header or (rendering.name == "chat" and params.instruction)


def chat_rows(example: dict, record: dict, state: SplitState) -> list[dict]:
    tokenizer, params, counts = state.tokenizer, state.params, state.counts
    if params.instruction:
        example = with_instruction(example, state.intents.get(example["source"], ()))
    # a row known too long by its characters (length_fit.cannot_fit) is never tokenized whole: a first
    # prompt that long goes unmeasured (the shortest-prompt check is about prompts a larger max_length
    # would fit), and the row takes no shots (they are taken out again when it does not fit)
    huge = chat_cannot_fit(tokenizer, example["messages"], params.max_length)
    first_reply = next((i for i, m in enumerate(example["messages"]) if m["role"] == "assistant"), 0)
    if not chat_cannot_fit(tokenizer, example["messages"][:first_reply], params.max_length, add_generation_prompt=True):
        if (first := first_prompt_length(example, tokenizer)) is not None:
            state.prompts.append(first)
    candidate = example
    if state.shots_on and not huge:
        query = " ".join(m["content"] for m in example["messages"] if m["role"] == "user")
        shots = state.shot_index.nearest(example["source"], example["group"], query, params.few_shot_k)
        candidate = chat_with_shots(example, shots, tokenizer, params.few_shot_budget)
        if candidate is not example and token_length(tokenizer, candidate["messages"]) > params.max_length:
            candidate = example   # shots never cost a row
    fitted = fit_length(candidate, tokenizer, params)
    if fitted is None:
        counts["dropped_too_long"] += 1
        return []
    if len(fitted["messages"]) < len(candidate["messages"]):
        counts["truncated"] += 1
    counts["few_shot_rows"] += candidate is not example and fitted is candidate
    state.lengths.append(token_length(tokenizer, fitted["messages"]))
    return [fitted]


def prompt_completion_rows(layout: Layout, example: dict, record: dict, state: SplitState) -> list[dict]:
    """One row per assistant turn, its gold history as the prompt (a dialogue of n turns gives n rows)."""
    tokenizer, params, counts = state.tokenizer, state.params, state.counts
    context = (record.get("meta") or {}).get("context")
    rows = []
    header = state.intents.get(example["source"], ())
    for index, spec in turn_specs(example, context if isinstance(context, str) else None, header):
        bare_prompt = layout(spec)[0]
        # a prompt known too long by its characters is never tokenized whole: it goes unmeasured (as in
        # chat_rows), and takes no shots (fit_spec would take them all out before any history turn)
        huge = cannot_fit(bare_prompt, tokenizer, params.max_length)
        bare_ids = None if huge else text_ids(tokenizer, bare_prompt)
        if bare_ids is not None:
            state.prompts.append(len(bare_ids))
        if state.shots_on and not huge:
            shots = state.shot_index.nearest(example["source"], example["group"], spec.target.user,
                                             params.few_shot_k)
            spec = with_shots(spec, shots, layout, tokenizer, params.few_shot_budget)
        fitted = fit_spec(spec, layout, tokenizer, params)
        if fitted is None:
            counts["dropped_too_long"] += 1
            continue
        spec, prompt, completion, ids, truncated = fitted
        counts["truncated"] += truncated
        counts["few_shot_rows"] += bool(spec.shots)
        prompt_ids = bare_ids if prompt == bare_prompt and bare_ids is not None else text_ids(tokenizer, prompt)
        counts["prompt_boundary_mismatch"] += ids[: len(prompt_ids)] != prompt_ids   # TRL's mask starts at the split
        state.lengths.append(len(ids))
        rows.append({"id": example["id"], "source": example["source"], "group": example["group"],
                     "prompt": prompt, "completion": completion,
                     "gold": [g for g in example["gold"] if g["index"] == index]})
    return rows


def text_rows(example: dict | None, record: dict, state: SplitState) -> list[dict]:
    """A conversation in the chat layout as plain text, or a raw-text record as is (EOS appended)."""
    raw = None if example else {"id": record["id"], "source": record["source"], "group": record["group"],
                                "text": with_eos(record["text"], state.tokenizer), "gold": []}
    fitted = fit_text(example, raw, state.tokenizer, state.params)
    if fitted is None:
        state.counts["dropped_too_long"] += 1
        return []
    row, tokens, truncated = fitted
    state.lengths.append(tokens)
    state.counts["truncated"] += truncated
    return [row]


def prompt_completion(name: str, layout: Layout, intent_header: bool = False) -> Rendering:
    return Rendering(name, ("prompt", "completion"), "completion_only_loss", partial(prompt_completion_rows, layout),
                     prompt_completion=True, intent_header=intent_header)


register(Rendering("chat", ("messages",), "assistant_only_loss", chat_rows))
register(prompt_completion("qa", render_qa))
register(prompt_completion("alpaca", render_alpaca))
register(prompt_completion("seq2seq", render_seq2seq))
register(prompt_completion("syntod", render_syntod, intent_header=True))
register(Rendering("text", ("text",), "all_tokens", text_rows, reads_raw_text=True, takes_shots=False))
