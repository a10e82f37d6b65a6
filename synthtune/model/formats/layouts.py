"""The text layouts of the prompt/completion renderings (qa, alpaca, seq2seq, syntod) and of raw text.

A prompt/completion row is one assistant turn: a `Spec` holds what its prompt is made of (the gold
history before the turn, the target exchange, an optional document context, few-shot exchanges and
the SynTOD intent header) and a layout function turns it into (prompt, completion) strings. The
functions here are pure string building; which tokens fit and which shots go in is decided by
length_fit and few_shot, and renderings registers each layout under its `format.template` name.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from synthtune.model.formats.annotations import SYNTOD_ASSISTANT, annotation_line
from synthtune.model.formats.prompts import with_eos

ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately completes "
          "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                "context. Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
CONTEXT_INSTRUCTION = ("Use the following pieces of context to answer the question at the end. If you don't "
                       "know the answer, just say that you don't know, don't try to make up an answer.")
SEQ2SEQ_TAGS = {"user": "user", "assistant": "bot", "system": "system"}   # synthtune.generate.loaders.to_seq2seq's role tags
SPEAKERS = {"user": "User", "assistant": "Assistant", "system": "System"}


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


Layout = Callable[[Spec], tuple[str, str]]


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
    """Every (user, assistant) exchange of a chat example: the few-shot candidates it offers."""
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
