"""What predict generates, and with which models: the roster, the scored turns, one model's predictions.

The generation itself lives in the llm layer, one implementation each, shared with the teacher:
* `hf` (synthtune.llm.backends.hf): the tokenizer's chat template (the trainer's rendering), prompts
  sorted by length so each batch pads little, left padding, greedy unless `do_sample`; batched greedy
  output equals one-prompt-at-a-time output (tested). Stop strings end a sequence early and are cut off.
* `vllm` (synthtune.llm.backends.vllm): optional, CUDA; imported only when chosen (one-line error
  when not installed).
* `openai` (synthtune.llm.backends.openai): any OpenAI-compatible endpoint (a hosted model, the
  teacher as a reference), key from an environment variable; requests run concurrently through
  the teacher's client (retries, backoff), results keep the caller's order.
Each backend: `generate(conversations, gen) -> list[str]`, `perplexity(examples) -> dict | None`.

The roster (`model_roster`) is `predict.models` (base, tuned), then `predict.adapters` (more
fine-tuned outputs on the same base), then `predict.openai` endpoints.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from synthtune.core.config import OpenAIModelParams, PredictParams
from synthtune.core.errors import InputError, ParamsError
# render_prompts is re-exported: tests/model check that predict renders prompts exactly as training did.
from synthtune.llm.backends.hf import HFBackend, render_prompts  # noqa: F401

log = logging.getLogger(__name__)

RESERVED_NAMES = {"majority"}          # the score stage's baseline


# --- the models scored side by side ---------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    name: str
    adapter: Path | None = None                 # a fine-tuned output on top of the base (LoRA or full)
    endpoint: OpenAIModelParams | None = None   # a hosted model


def model_roster(params: PredictParams, tuned_dir: Path) -> list[ModelSpec]:
    specs = [ModelSpec(name, adapter=Path(tuned_dir) if name == "tuned" else None) for name in params.models]
    for name, path in params.adapters.items():
        if not (Path(path) / "adapter_config.json").exists() and not (Path(path) / "config.json").exists():
            raise ParamsError(f"params.yaml: predict.adapters.{name}: {path} holds no adapter or model")
        specs.append(ModelSpec(name, adapter=Path(path)))
    specs += [ModelSpec(name, endpoint=endpoint) for name, endpoint in params.openai.items()]
    names = [s.name for s in specs]
    clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & RESERVED_NAMES))
    if clash:
        raise ParamsError(f"params.yaml: predict: model names must be unique and not {sorted(RESERVED_NAMES)}: {clash}")
    if not specs:
        raise ParamsError("params.yaml: predict: no models to run (models, adapters and openai are all empty)")
    return specs


@contextmanager
def open_backend(spec: ModelSpec, base_dir: Path, backend: str, *, trust_remote_code: bool = False,
                 seed: int = 0, dtype: str = "float32") -> Iterator:
    """The backend that runs one roster entry; frees the model when the block ends."""
    if spec.endpoint is not None:
        from synthtune.llm.backends.openai import OpenAIBackend

        yield OpenAIBackend(spec.name, spec.endpoint, seed)
    elif backend == "vllm":
        from synthtune.llm.backends.vllm import VLLMBackend
        from synthtune.model.base_model import model_source

        yield VLLMBackend(*model_source(base_dir), spec.adapter, seed, trust_remote_code)
    else:
        from synthtune.model.base_model import load_base, load_tuned
        from synthtune.model.precision import checked_dtype

        dtype = checked_dtype(dtype, "model.dtype")   # the caller passes params.model.dtype
        model, tokenizer = (load_tuned(base_dir, spec.adapter, trust_remote_code, dtype=dtype) if spec.adapter
                            else load_base(base_dir, trust_remote_code, dtype=dtype))
        yield HFBackend(model, tokenizer, seed)
    import gc

    gc.collect()


# --- what predict generates -------------------------------------------------------------------------

def eval_examples(examples: list[dict], max_dialogues: int) -> list[dict]:
    """The test examples that predict generates for and score scores: the first N of each source, in
    file order (0: all). Per source, so a small source (document QA) is never crowded out by the
    dialogue sources that precede it in the file."""
    if not max_dialogues:
        return list(examples)
    taken: dict[str, int] = {}
    kept = []
    for example in examples:
        source = example.get("source", "")
        if taken.get(source, 0) < max_dialogues:
            taken[source] = taken.get(source, 0) + 1
            kept.append(example)
    return kept


def turn_id(example: dict, turn: dict) -> str:
    return f"{example['id']}:{turn['index']}"


def eval_turns(example: dict) -> list[dict]:
    """The turns of an example that are predicted and scored, each on its gold history.

    Annotated dialogues: their gold turns (state annotation + reply). A chat example without
    annotations (QA, instructions): every assistant turn, scored as a reply only (intent None).
    """
    if example.get("gold"):
        return example["gold"]
    return [{"index": i, "intent": None, "slots": None, "reply": m["content"]}
            for i, m in enumerate(example.get("messages") or []) if m["role"] == "assistant"]


def require_turns(examples: Sequence[dict], source: str | Path) -> None:
    if not any(eval_turns(ex) for ex in examples):
        raise InputError(f"{source}: the test split is empty (no assistant turns to predict and score)")


def turn_prompts(examples: Sequence[dict]) -> tuple[list[str], list[list[dict] | str]]:
    """(ids, teacher-forced prompts): the gold history up to each scored turn, as chat messages
    for chat rows and as the rendered prompt string for the other templates."""
    from synthtune.model.formats import prompt_messages, prompt_text

    keys, conversations = [], []
    for example in examples:
        for turn in eval_turns(example):
            keys.append(turn_id(example, turn))
            conversations.append(prompt_messages(example, turn) if "messages" in example
                                 else prompt_text(example, turn, None))
    return keys, conversations


def api_conversations(prompts: Sequence[dict]) -> list[list[dict]]:
    return [[{"role": "user", "content": p["prompt"]}] for p in prompts]


def predict_model(backend, examples: Sequence[dict], api_prompts: Sequence[dict], val: Sequence[dict],
                  params: PredictParams) -> tuple[list[dict], list[dict], dict]:
    """One model's (turn predictions, API-prompt answers, stats) with one backend."""
    keys, conversations = turn_prompts(examples)
    outputs = backend.generate(conversations, params)
    api_outputs = backend.generate(api_conversations(api_prompts),
                                   params.model_copy(update={"max_new_tokens": params.api_max_new_tokens}))
    stats = {"turns": len(keys), "api_prompts": len(api_prompts)}
    if params.perplexity and val:
        ppl = backend.perplexity(val)
        if ppl is not None:
            stats.update(ppl)
    return ([{"id": k, "output": o} for k, o in zip(keys, outputs)],
            [{"id": p["id"], "output": o} for p, o in zip(api_prompts, api_outputs)], stats)
