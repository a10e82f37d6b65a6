"""Format: render canonical records into the training rows TRL consumes, and the prompts predict uses.

`format.template` picks the rendering; every template writes what TRL's SFTTrainer reads as is:

    chat      {"messages"}             the tokenizer's chat template; loss on its `{% generation %}`
                                       spans (assistant_only_loss)
    qa        {"prompt", "completion"} `Question: …\\nAnswer:` + ` answer`            (completion_only_loss)
    alpaca    {"prompt", "completion"} Alpaca instruction/input/response; a record with
                                       `meta.context` gets the "Use the following pieces of context" variant
    seq2seq   {"prompt", "completion"} `<Role user>…` / `<Role bot>…` lines (as synthtune.generate.loaders.to_seq2seq)
    syntod    {"prompt", "completion"} SynTOD text: `### HUMAN: … ## {state}` / `### ASSISTANT: …`
    text      {"text"}                 raw text for continued pretraining (loss on every token)

A dialogue turn is trained as the user's utterance, then an assistant message whose first line
is the state annotation of that user turn (intent and slots, one JSON line) and whose rest is the
system reply. Chat rows hold a whole conversation; prompt/completion rows one assistant turn each
(the gold history is the prompt), so a dialogue of n turns gives n rows. Every row carries `id`
(the record's), `source`, `group` and `gold` (the annotated turns it can be scored on).

Prediction uses the very same rendering: `render_prompt(row, turn, tokenizer)` gives the token ids
of the prompt of a gold turn, which are a token-identical prefix of what TRL trains on (tested for
every template). `data/formatted/format.json` (see `manifest`) records the template and settings
so the trained model keeps them.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from synthtune.core.config import FormatParams
from synthtune.core.errors import ParamsError

TEMPLATES = ("chat", "qa", "alpaca", "seq2seq", "syntod", "text")
PROMPT_TEMPLATES = ("qa", "alpaca", "seq2seq", "syntod")
MANIFEST_VERSION = 1

ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately completes "
          "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
CONTEXT_INSTRUCTION = ("Use the following pieces of context to answer the question at the end. If you don't "
                       "know the answer, just say that you don't know, don't try to make up an answer.")
SEQ2SEQ_TAGS = {"user": "user", "assistant": "bot", "system": "system"}   # synthtune.generate.loaders.to_seq2seq's role tags
SYNTOD_ASSISTANT = "### ASSISTANT:"
SPEAKERS = {"user": "User", "assistant": "Assistant", "system": "System"}


def check_template(name: str) -> str:
    if name not in TEMPLATES:
        raise ParamsError(f"format.template: unknown template {name!r} (known: {', '.join(TEMPLATES)})")
    return name


def annotation_line(annotations: dict) -> str:
    return json.dumps({"intent": annotations.get("intent"), "slots": annotations.get("slots", {})},
                      ensure_ascii=False, sort_keys=False)


def parse_annotation(text: str) -> tuple[str | None, dict, str]:
    """Split a generated assistant message into (intent, slots, reply); intent None when unparseable.

    A SynTOD completion (`{state}\\n### ASSISTANT: reply`) parses the same: the speaker tag is dropped.
    """
    first, _, rest = text.partition("\n")
    rest = rest.strip()
    if rest.startswith(SYNTOD_ASSISTANT):
        rest = rest[len(SYNTOD_ASSISTANT):]
    try:
        state = json.loads(first)
    except json.JSONDecodeError:
        return None, {}, text.strip()
    if not isinstance(state, dict) or not isinstance(state.get("intent"), str):
        return None, {}, rest.strip()
    slots = state.get("slots") if isinstance(state.get("slots"), dict) else {}
    return state["intent"], slots, rest.strip()


def to_chat(record: dict) -> dict:
    """Canonical record -> {"id", "source", "group", "messages", "gold"} with annotated assistant turns."""
    messages, gold = [], []
    pending = None  # the annotations of the user turn the next assistant message answers
    for message in record["messages"]:
        role, content = message["role"], message["content"]
        annotations = message.get("annotations") or {}
        if role == "user":
            pending = annotations if "intent" in annotations else None
            messages.append({"role": "user", "content": content})
        elif role == "assistant" and pending is not None:
            gold.append({"index": len(messages), "intent": pending["intent"],
                         "slots": pending.get("slots", {}), "reply": content})
            messages.append({"role": "assistant", "content": annotation_line(pending) + "\n" + content})
            pending = None
        else:
            messages.append({"role": role, "content": content})
    return {"id": record["id"], "source": record["source"], "group": record["group"],
            "messages": messages, "gold": gold}


def plain_text(record: dict) -> str:
    """The conversation without annotations, rendered like chat: the base model's pretraining text."""
    lines = []
    for message in record["messages"]:
        lines.append(f"<|{message['role']}|>\n{message['content']}<|end|>")
    return "\n".join(lines) + "\n"


def pretraining_corpus(pool: list[dict], seed: int) -> tuple[list[str], list[str]]:
    """Texts for the tiny base model: (tokenizer training texts, pretraining texts).

    The tokenizer sees the rendered training text, so intents and slots tokenize compactly.
    Pretraining sees the plain dialogues plus the annotation lines as a separate, shuffled
    document: the base model then knows every token and the JSON syntax (a tied LM head with
    never-trained rows is something LoRA cannot fix), but not which state follows which
    utterance, which is what fine-tuning must teach.
    """
    import random

    chats = [to_chat(r) for r in pool if r.get("messages")]
    tokenizer_texts = [m["content"] for chat in chats for m in chat["messages"]]
    states = [annotation_line(turn) for chat in chats for turn in chat["gold"]]
    random.Random(seed).shuffle(states)
    pretrain_texts = [plain_text(r) for r in pool if r.get("messages")] + ["\n".join(states) + "\n"]
    return tokenizer_texts, pretrain_texts


def prompt_messages(example: dict, turn: dict) -> list[dict]:
    """Teacher-forced prompt of a gold turn: the gold history up to (and including) its user message."""
    return example["messages"][: turn["index"]]


def token_length(tokenizer, messages: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a plain-text prompt or sequence exactly as TRL tokenizes it (`tokenizer(text=...)`)."""
    return tokenizer(text=text)["input_ids"]


def with_eos(text: str, tokenizer) -> str:
    """TRL appends the EOS token to a completion or text that lacks it; the rows hold it already."""
    eos = tokenizer.eos_token or ""
    return text if text.endswith(eos) else text + eos


# ---------------------------------------------------------------- prediction prompts

def prompt_text(example: dict, turn: dict, tokenizer) -> str:
    """The prompt string of one gold turn of a formatted row (any template)."""
    if "messages" in example:
        return tokenizer.apply_chat_template(prompt_messages(example, turn), add_generation_prompt=True,
                                             tokenize=False)
    if "prompt" in example:
        if all(g["index"] != turn["index"] for g in example["gold"]):
            raise ValueError(f"turn {turn['index']} is not the turn of row {example['id']}")
        return example["prompt"]
    return example["text"][: turn["prompt_chars"]]


def render_prompt(example: dict, turn: dict, tokenizer) -> list[int]:
    """Token ids of the prompt of one gold turn, exactly as training saw them (what predict generates from)."""
    if "messages" in example:
        return tokenizer.apply_chat_template(prompt_messages(example, turn), add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"]
    return text_ids(tokenizer, prompt_text(example, turn, tokenizer))


# ---------------------------------------------------------------- prompt/completion renderings

@dataclass(frozen=True)
class Exchange:
    """One user message and the assistant message that answers it (a turn, or a few-shot example)."""
    user: str
    answer: str                 # the assistant content as trained: state line + reply when annotated
    state: dict | None = None   # {"intent", "slots"} of the user turn, None when unannotated
    reply: str = ""             # the reply alone


@dataclass(frozen=True)
class Spec:
    """Everything one prompt/completion row is rendered from."""
    history: tuple[dict, ...]   # {"role", "content", "state", "reply"} before the target's user message
    target: Exchange
    context: str | None = None
    shots: tuple[Exchange, ...] = ()
    intents: tuple[str, ...] = ()   # syntod header


def _history_lines(history, user: Callable, assistant: Callable, system: Callable) -> list[str]:
    render = {"user": user, "assistant": assistant, "system": system}
    return [render[seg["role"]](seg) for seg in history]


def render_qa(spec: Spec) -> tuple[str, str]:
    parts = [f"Context: {spec.context}\n\n"] if spec.context else []
    parts += [f"Question: {s.user}\nAnswer: {s.answer}\n\n" for s in spec.shots]
    parts += _history_lines(spec.history, lambda s: f"Question: {s['content']}\n",
                            lambda s: f"Answer: {s['content']}\n\n", lambda s: f"{s['content']}\n\n")
    return "".join(parts) + f"Question: {spec.target.user}\nAnswer:", " " + spec.target.answer


def render_alpaca(spec: Spec) -> tuple[str, str]:
    transcript = "\n".join(f"{SPEAKERS[s['role']]}: {s['content']}" for s in spec.history)
    shots = "".join(f"Q: {s.user}\nA: {s.answer}\n\n" for s in spec.shots)   # Data V5's shot layout
    if spec.context is not None:   # document QA (David & Goliath): the chunk is the input
        instruction = CONTEXT_INSTRUCTION
        inputs = [spec.context, transcript, f"Question: {spec.target.user}"]
    else:
        instruction, inputs = spec.target.user, [transcript]
    inputs = [i for i in inputs if i]
    if inputs:
        prompt = ALPACA_INPUT.format(instruction=shots + instruction, input="\n\n".join(inputs))
    else:
        prompt = ALPACA.format(instruction=shots + instruction)
    return prompt, spec.target.answer


def render_seq2seq(spec: Spec) -> tuple[str, str]:
    lines = [f"<Role system>{spec.context}"] if spec.context else []
    for shot in spec.shots:
        lines += [f"<Role user>{shot.user}", f"<Role bot>{shot.answer}"]
    lines += [f"<Role {SEQ2SEQ_TAGS[s['role']]}>{s['content']}" for s in spec.history]
    lines.append(f"<Role user>{spec.target.user}")
    return "\n".join(lines) + "\n<Role bot>", spec.target.answer


def _syntod_human(text: str, state: dict | None) -> str:
    return f"### HUMAN: {text}" + (f" ## {annotation_line(state)}" if state else "")


def render_syntod(spec: Spec) -> tuple[str, str]:
    lines = [f"### INTENTS: {', '.join(spec.intents)}"] if spec.intents else []
    if spec.context:
        lines.append(f"### CONTEXT: {spec.context}")
    for shot in spec.shots:
        lines += [_syntod_human(shot.user, shot.state), f"{SYNTOD_ASSISTANT} {shot.reply}"]
    lines += _history_lines(spec.history, lambda s: _syntod_human(s["content"], s["state"]),
                            lambda s: f"{SYNTOD_ASSISTANT} {s['reply']}", lambda s: f"### SYSTEM: {s['content']}")
    target = spec.target
    if target.state:   # the model writes the state after `##`, then the reply
        lines.append(f"### HUMAN: {target.user} ##")
        return "\n".join(lines), f" {annotation_line(target.state)}\n{SYNTOD_ASSISTANT} {target.reply}"
    lines += [f"### HUMAN: {target.user}", SYNTOD_ASSISTANT]
    return "\n".join(lines), f" {target.reply}"


RENDERERS: dict[str, Callable[[Spec], tuple[str, str]]] = {
    "qa": render_qa, "alpaca": render_alpaca, "seq2seq": render_seq2seq, "syntod": render_syntod}


def segments(example: dict) -> list[dict]:
    """The messages of a chat example with each turn's state (on user and assistant) and bare reply."""
    gold = {g["index"]: g for g in example["gold"]}
    out = []
    for i, message in enumerate(example["messages"]):
        own = gold.get(i) if message["role"] == "assistant" else gold.get(i + 1)
        state = {"intent": own["intent"], "slots": own["slots"]} if own else None
        reply = gold[i]["reply"] if i in gold else message["content"]
        out.append({"role": message["role"], "content": message["content"], "state": state, "reply": reply})
    return out


def turn_specs(example: dict, context: str | None, intents: Sequence[str] = ()) -> list[tuple[int, Spec]]:
    """(index, Spec) for every assistant message that answers a user message."""
    segs, specs = segments(example), []
    for i in range(1, len(segs)):
        if segs[i]["role"] == "assistant" and segs[i - 1]["role"] == "user":
            user, answer = segs[i - 1], segs[i]
            target = Exchange(user["content"], answer["content"], answer["state"], answer["reply"])
            specs.append((i, Spec(tuple(segs[: i - 1]), target, context, (), tuple(intents))))
    return specs


def exchanges(example: dict) -> list[Exchange]:
    return [spec.target for _, spec in turn_specs(example, None)]


def text_row(example: dict, tokenizer) -> dict:
    """Raw-text rendering of a conversation (the tiny chat template's layout); gold turns mark their prompt end."""
    blocks, gold, offset = [], [], 0
    by_index = {g["index"]: g for g in example["gold"]}
    for i, message in enumerate(example["messages"]):
        head = ("\n" if blocks else "") + f"<|{message['role']}|>\n"
        if i in by_index:
            gold.append({**by_index[i], "prompt_chars": offset + len(head)})
        block = head + message["content"] + "<|end|>"
        blocks.append(block)
        offset += len(block)
    return {"id": example["id"], "source": example["source"], "group": example["group"],
            "text": with_eos("".join(blocks), tokenizer), "gold": gold}


# ---------------------------------------------------------------- few-shot

class ShotIndex:
    """TF-IDF cosine neighbours among the train split's turns, per source; only train turns are shots."""

    def __init__(self, train_examples: Sequence[dict]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        pool: dict[str, tuple[list[Exchange], list[str]]] = {}
        for example in train_examples:
            shots, groups = pool.setdefault(example["source"], ([], []))
            for shot in exchanges(example):
                shots.append(shot)
                groups.append(example["group"])
        self.index = {}
        for source, (shots, groups) in pool.items():
            vectorizer = TfidfVectorizer(sublinear_tf=True)
            try:
                matrix = vectorizer.fit_transform([s.user for s in shots])
            except ValueError:   # no usable vocabulary (e.g. empty or stop-word-only texts)
                continue
            self.index[source] = (vectorizer, matrix, shots, groups)

    def nearest(self, source: str, group: str, query: str, k: int) -> list[Exchange]:
        """The k nearest distinct train turns of `source`, never from `group` (the example's own dialogue)."""
        import numpy as np

        if k <= 0 or source not in self.index:
            return []
        vectorizer, matrix, shots, groups = self.index[source]
        scores = (matrix @ vectorizer.transform([query]).T).toarray().ravel()
        out, seen = [], set()
        for i in np.lexsort((np.arange(len(scores)), -scores)):   # best first, ties by position
            if scores[i] <= 0 or len(out) == k:
                break
            key = (shots[i].user, shots[i].answer)
            if groups[i] != group and key not in seen:
                seen.add(key)
                out.append(shots[i])
        return out


def with_shots(spec: Spec, candidates: list[Exchange], render, tokenizer, budget: int) -> Spec:
    """Add shots nearest first while the prompt stays within `budget` tokens."""
    for shot in candidates:
        trial = replace(spec, shots=spec.shots + (shot,))
        if len(text_ids(tokenizer, render(trial)[0])) > budget:
            break
        spec = trial
    return spec


def first_prompt_length(example: dict, tokenizer) -> int | None:
    """Tokens of a chat example's first prompt (everything before its first assistant turn); None: no turn."""
    first = next((i for i, m in enumerate(example["messages"]) if m["role"] == "assistant"), None)
    if first is None:
        return None
    return len(tokenizer.apply_chat_template(example["messages"][:first], add_generation_prompt=True,
                                             tokenize=True, return_dict=True)["input_ids"])


def chat_with_shots(example: dict, shots: list[Exchange], tokenizer, budget: int) -> dict:
    """A chat example whose leading system message lists the shots (system turns are never trained)."""
    def build(chosen):
        text = "Examples:\n\n" + "\n\n".join(f"User: {s.user}\nAssistant: {s.answer}" for s in chosen)
        messages = example["messages"]
        if messages and messages[0]["role"] == "system":
            return {**example, "messages": [{"role": "system", "content": text + "\n\n" + messages[0]["content"]},
                                            *messages[1:]]}
        gold = [{**g, "index": g["index"] + 1} for g in example["gold"]]
        return {**example, "messages": [{"role": "system", "content": text}, *messages], "gold": gold}

    chosen = []
    for shot in shots:
        if first_prompt_length(build(chosen + [shot]), tokenizer) > budget:
            break
        chosen.append(shot)
    return build(chosen) if chosen else example


# ---------------------------------------------------------------- length fit

def fit_length(example: dict, tokenizer, params: FormatParams) -> dict | None:
    """Fit a conversation into max_length tokens: drop it, or keep the longest prefix of whole turns."""
    if token_length(tokenizer, example["messages"]) <= params.max_length:
        return example
    if params.overflow == "drop":
        return None
    ends = [g["index"] + 1 for g in example["gold"]] or [
        i + 1 for i, m in enumerate(example["messages"]) if m["role"] == "assistant"]
    for end in reversed(ends):
        messages = example["messages"][:end]
        if token_length(tokenizer, messages) <= params.max_length:
            gold = [g for g in example["gold"] if g["index"] < end]
            return {**example, "messages": messages, "gold": gold}
    return None


def fit_spec(spec: Spec, render, tokenizer, params: FormatParams) -> tuple[Spec, str, str, list[int], bool] | None:
    """(spec, prompt, completion, token ids, truncated) within max_length: shots go first (farthest first),
    then, with overflow truncate_turns, the oldest history turns; None when even that does not fit."""
    truncated = False
    while True:
        prompt, completion = render(spec)
        completion = with_eos(completion, tokenizer)
        ids = text_ids(tokenizer, prompt + completion)
        if len(ids) <= params.max_length:
            return spec, prompt, completion, ids, truncated
        if spec.shots:
            spec = replace(spec, shots=spec.shots[:-1])
        elif params.overflow == "truncate_turns" and spec.history:
            history = list(spec.history[1:])
            while history and history[0]["role"] != "user":
                history.pop(0)
            spec, truncated = replace(spec, history=tuple(history)), True
        else:
            return None


def fit_text(example: dict | None, raw: dict | None, tokenizer, params: FormatParams) -> tuple[dict, int, bool] | None:
    """A text row within max_length: (row, tokens, truncated), or None (overflow drop, or nothing fits).

    A conversation keeps its longest prefix of whole turns (as chat does); raw text is cut at a token
    boundary, its EOS kept.
    """
    row = text_row(example, tokenizer) if example is not None else raw
    tokens = len(text_ids(tokenizer, row["text"]))
    if tokens <= params.max_length:
        return row, tokens, False
    if params.overflow == "drop":
        return None
    if example is not None:
        fitted = None
        for end in reversed([i + 1 for i, m in enumerate(example["messages"]) if m["role"] == "assistant"]):
            cut = {**example, "messages": example["messages"][:end],
                   "gold": [g for g in example["gold"] if g["index"] < end]}
            fitted = text_row(cut, tokenizer)
            tokens = len(text_ids(tokenizer, fitted["text"]))
            if tokens <= params.max_length:
                return fitted, tokens, True
        return None
    offsets = tokenizer(text=raw["text"], return_offsets_mapping=True)["offset_mapping"]
    for keep in range(params.max_length - 1, 0, -1):
        text = with_eos(raw["text"][: offsets[keep][0]], tokenizer)
        tokens = len(text_ids(tokenizer, text))
        if tokens <= params.max_length:
            return {**raw, "text": text}, tokens, True
    return None


# ---------------------------------------------------------------- splits

@dataclass
class Formatted:
    rows: dict[str, list[dict]] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, list[int]] = field(default_factory=dict)
    intents: dict[str, list[str]] = field(default_factory=dict)   # syntod: per source


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of sorted integers (0 for none)."""
    if not sorted_values:
        return 0
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _chat_rows(example, params, tokenizer, shot_index, counts, lengths, prompts):
    if (first := first_prompt_length(example, tokenizer)) is not None:
        prompts.append(first)
    candidate = example
    if shot_index is not None and params.few_shot_k:
        query = " ".join(m["content"] for m in example["messages"] if m["role"] == "user")
        shots = shot_index.nearest(example["source"], example["group"], query, params.few_shot_k)
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
    lengths.append(token_length(tokenizer, fitted["messages"]))
    return [fitted]


def _prompt_rows(example, record, params, tokenizer, shot_index, counts, lengths, prompts, intents):
    render = RENDERERS[params.template]
    context = (record.get("meta") or {}).get("context")
    rows = []
    header = intents.get(example["source"], ())
    for index, spec in turn_specs(example, context if isinstance(context, str) else None, header):
        bare_prompt = render(spec)[0]
        bare_ids = text_ids(tokenizer, bare_prompt)
        prompts.append(len(bare_ids))
        if shot_index is not None and params.few_shot_k:
            shots = shot_index.nearest(example["source"], example["group"], spec.target.user, params.few_shot_k)
            spec = with_shots(spec, shots, render, tokenizer, params.few_shot_budget)
        fitted = fit_spec(spec, render, tokenizer, params)
        if fitted is None:
            counts["dropped_too_long"] += 1
            continue
        spec, prompt, completion, ids, truncated = fitted
        counts["truncated"] += truncated
        counts["few_shot_rows"] += bool(spec.shots)
        prompt_ids = bare_ids if prompt == bare_prompt else text_ids(tokenizer, prompt)
        counts["prompt_boundary_mismatch"] += ids[: len(prompt_ids)] != prompt_ids   # TRL's mask starts at the split
        lengths.append(len(ids))
        rows.append({"id": example["id"], "source": example["source"], "group": example["group"],
                     "prompt": prompt, "completion": completion,
                     "gold": [g for g in example["gold"] if g["index"] == index]})
    return rows


def _format_split(records, tokenizer, params, shot_index=None, intents=None):
    intents = intents or {}
    check_template(params.template)
    rows, counts, lengths, prompts = [], Counter(), [], []
    counts.update({"dropped_too_long": 0, "truncated": 0})
    if params.template in PROMPT_TEMPLATES:
        counts["prompt_boundary_mismatch"] = 0
    for record in records:
        if record.get("meta", {}).get("prompt_only"):
            counts["skipped_prompt_only"] += 1    # nothing to train on or score against
            continue
        if record.get("messages") is None and params.template != "text":
            counts["skipped_text_records"] += 1   # no turns to render as a prompt
            continue
        example = to_chat(record) if record.get("messages") is not None else None
        if params.template == "chat":
            rows += _chat_rows(example, params, tokenizer, shot_index, counts, lengths, prompts)
        elif params.template in PROMPT_TEMPLATES:
            rows += _prompt_rows(example, record, params, tokenizer, shot_index, counts, lengths, prompts, intents)
        else:
            raw = None if example else {"id": record["id"], "source": record["source"], "group": record["group"],
                                        "text": with_eos(record["text"], tokenizer), "gold": []}
            fitted = fit_text(example, raw, tokenizer, params)
            if fitted is None:
                counts["dropped_too_long"] += 1
                continue
            rows.append(fitted[0])
            lengths.append(fitted[1])
            counts["truncated"] += fitted[2]
    if prompts and params.max_length < min(prompts):
        raise ParamsError(f"format.max_length: {params.max_length} tokens is shorter than the shortest prompt "
                          f"({min(prompts)} tokens); raise format.max_length")
    ordered = sorted(lengths)
    counts.update({"examples": len(rows), "tokens": sum(lengths), "max_tokens": max(lengths, default=0),
                   "p50_tokens": percentile(ordered, 0.5), "p95_tokens": percentile(ordered, 0.95)})
    if params.few_shot_k == 0:
        counts.pop("few_shot_rows", None)
    return rows, dict(counts), lengths


def format_split(records: list[dict], tokenizer, params: FormatParams) -> tuple[list[dict], dict]:
    """Render and length-fit one split on its own (no few-shot pool; SynTOD intents from these records)."""
    rows, counts, _ = _format_split(records, tokenizer, params, None, syntod_intents(records, params))
    return rows, counts


def syntod_intents(train: Sequence[dict], params: FormatParams) -> dict[str, list[str]]:
    """The SynTOD header's allowed intents, per source: every intent annotated in its train records."""
    found: dict[str, set[str]] = {}
    for record in train if params.template == "syntod" else ():
        for message in record.get("messages") or []:
            if message["role"] == "user" and "intent" in (message.get("annotations") or {}):
                found.setdefault(record["source"], set()).add(message["annotations"]["intent"])
    return {source: sorted(intents) for source, intents in sorted(found.items())}


def format_splits(splits: dict[str, list[dict]], tokenizer, params: FormatParams) -> Formatted:
    """Render every split; only the train split supplies shots and the SynTOD intent list."""
    check_template(params.template)
    if params.few_shot_k and params.template == "text":
        raise ParamsError("format.few_shot_k: template 'text' has no prompt to put shots in; set it to 0")
    train = [r for r in splits.get("train", []) if r.get("messages") and not r.get("meta", {}).get("prompt_only")]
    intents = syntod_intents(train, params)
    shot_index = ShotIndex([to_chat(r) for r in train]) if params.few_shot_k else None
    result = Formatted(intents=intents)
    for split, records in splits.items():
        rows, counts, lengths = _format_split(records, tokenizer, params, shot_index, intents)
        result.rows[split], result.lengths[split] = rows, lengths
        result.metrics.update({f"{split}_{key}": value for key, value in counts.items()})
    return result


def manifest(params: FormatParams, tokenizer, intents: dict[str, list[str]] | None = None) -> dict:
    """data/formatted/format.json: how the rows were rendered; train copies it next to the model."""
    fields = {"chat": ["messages"], "text": ["text"]}.get(params.template, ["prompt", "completion"])
    loss = {"chat": "assistant_only_loss", "text": "all_tokens"}.get(params.template, "completion_only_loss")
    out = {"version": MANIFEST_VERSION, **params.model_dump(), "fields": fields, "loss": loss,
           "eos_token": tokenizer.eos_token}
    if params.template == "syntod":
        out["intents"] = dict(intents or {})   # the header of each source's prompts
    return out


def render_records(records: list[dict], tokenizer, info: dict) -> list[dict]:
    """Rows for new records rendered as a trained model's format.json says (no shots: no train pool here).

    What predict, RAG or a serving script use for inputs that did not come through the format stage.
    """
    params = FormatParams(template=check_template(info.get("template", "chat")), max_length=info["max_length"],
                          overflow=info["overflow"])
    rows, _, _ = _format_split(records, tokenizer, params, None, info.get("intents") or {})
    return rows


def length_histogram(lengths: dict[str, list[int]], max_length: int, bins: int = 16) -> list[dict]:
    """Rows {tokens (bin upper edge), <split>: count} for the dvc length plot."""
    width = max(1, math.ceil(max_length / bins))
    rows = []
    for b in range(bins):
        low, high = b * width, (b + 1) * width
        rows.append({"tokens": high, **{split: sum(low < n <= high or (b == 0 and n == 0) for n in values)
                                        for split, values in lengths.items()}})
    return rows
