"""Generation backends and the models scored side by side: chat prompts in, completions out.

Backends (one interface: `generate(conversations, gen) -> list[str]`, `perplexity(examples)`):
* `hf`: the tokenizer's chat template (the trainer's rendering), prompts sorted by length so each
  batch pads little, left padding, greedy unless `do_sample`; batched greedy output equals
  one-prompt-at-a-time output (tested). Stop strings end a sequence early and are cut off.
* `vllm`: optional, CUDA; imported only when chosen (one-line error when not installed).
* `openai`: any OpenAI-compatible endpoint (a hosted model, the teacher as a reference), key
  from an environment variable; requests run concurrently, results keep the caller's order.

The roster (`model_roster`) is `predict.models` (base, tuned), then `predict.adapters` (more
fine-tuned outputs on the same base), then `predict.openai` endpoints.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from synthtune.core.config import GenerationParams, OpenAIModelParams, PredictParams
from synthtune.core.errors import InputError, ParamsError, UserError

log = logging.getLogger(__name__)

RESERVED_NAMES = {"majority"}          # the score stage's baseline


def render_prompts(tokenizer, conversations: Sequence[list[dict] | str]) -> list[list[int]]:
    """Token ids of each prompt: chat messages through the chat template, or a prompt string
    (qa/alpaca/seq2seq/syntod/text rows) tokenized exactly as training did (synthtune.model.formats.text_ids)."""
    from synthtune.model.formats import text_ids

    return [text_ids(tokenizer, c) if isinstance(c, str) else
            tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"] for c in conversations]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the first occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]


def hf_generation_kwargs(gen: GenerationParams) -> dict:
    """GenerationParams -> transformers `generate` keyword arguments (sampling knobs only when sampling)."""
    kwargs: dict = {"max_new_tokens": gen.max_new_tokens, "do_sample": gen.do_sample}
    if gen.do_sample:
        kwargs.update(temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p)
    if gen.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = gen.no_repeat_ngram_size
    if gen.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = gen.repetition_penalty
    return kwargs


def generate(model, tokenizer, conversations: Sequence[list[dict]], gen: GenerationParams | None = None, *,
             batch_size: int | None = None, max_new_tokens: int | None = None,
             max_prompt_tokens: int | None = None, seed: int = 0, **generate_kwargs) -> list[str]:
    """Completions for chat prompts, in the caller's order (rendered with the chat template).

    `batch_size` / `max_new_tokens` override `gen`; extra keyword arguments go to `model.generate`.
    """
    gen = (gen or GenerationParams()).model_copy(update={k: v for k, v in (
        ("batch_size", batch_size), ("max_new_tokens", max_new_tokens)) if v is not None})
    return generate_ids(model, tokenizer, render_prompts(tokenizer, conversations), gen,
                        max_prompt_tokens=max_prompt_tokens, seed=seed, **generate_kwargs)


def generate_ids(model, tokenizer, prompts: Sequence[list[int]], gen: GenerationParams, *,
                 max_prompt_tokens: int | None = None, seed: int = 0, **generate_kwargs) -> list[str]:
    """Completions for token-id prompts: length-sorted batches, left padding; prompts too long keep their end."""
    import torch
    from tqdm import tqdm

    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and not max_prompt_tokens:
        max_prompt_tokens = max(1, limit - gen.max_new_tokens)
    if max_prompt_tokens:
        prompts = [p[-max_prompt_tokens:] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    pad_id = tokenizer.pad_token_id
    kwargs = {**hf_generation_kwargs(gen), **generate_kwargs}
    if gen.stop:
        kwargs.update(stop_strings=list(gen.stop), tokenizer=tokenizer)
    torch.manual_seed(seed)
    model.eval()
    size = gen.batch_size
    for start in tqdm(range(0, len(order), size), desc="generate", disable=len(order) <= size):
        batch_ids = [list(prompts[i]) for i in order[start:start + size]]
        width = max(len(p) for p in batch_ids)
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch_ids])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch_ids])
        with torch.inference_mode():
            generated = model.generate(input_ids=input_ids, attention_mask=attention, pad_token_id=pad_id,
                                       eos_token_id=tokenizer.eos_token_id, **kwargs)
        for row, index in enumerate(order[start:start + size]):
            text = tokenizer.decode(generated[row, width:], skip_special_tokens=True)
            outputs[index] = cut_at_stop(text, gen.stop).strip()
    return outputs


def assistant_mask(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(token ids, 1 on assistant tokens) of a conversation.

    Uses the chat template's `{% generation %}` markers when it has them; otherwise each assistant
    turn is the difference between the rendering up to it and the generation prompt before it.
    """
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = list(out["input_ids"]), list(out.get("assistant_masks") or [])
    if any(mask):
        return ids, mask
    mask = [0] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(render_prompts(tokenizer, [messages[:i]])[0]) if i else 0
        end = len(tokenizer.apply_chat_template(messages[: i + 1], tokenize=True, return_dict=True)["input_ids"])
        mask[start:min(end, len(ids))] = [1] * (min(end, len(ids)) - start)
    return ids, mask


def assistant_perplexity(model, tokenizer, examples: Sequence[dict], batch_size: int = 8) -> dict:
    """exp(mean NLL) of the assistant tokens (annotation line, reply, end token) of chat examples."""
    import torch

    sequences = [assistant_mask(tokenizer, ex["messages"]) for ex in examples if ex.get("messages")]
    sequences = sorted((s for s in sequences if any(s[1])), key=lambda s: len(s[0]))
    nll, count = 0.0, 0
    model.eval()
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start:start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in batch])
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask)] + [-100] * (width - len(ids))
                               for ids, mask in batch])
        with torch.inference_mode():
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
        targets = labels[:, 1:]
        nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                 ignore_index=-100, reduction="sum").item()
        count += int((targets != -100).sum())
    return {"perplexity": round(math.exp(nll / count), 4) if count else None, "val_tokens": count}


# --- backends -----------------------------------------------------------------------------------

class HFBackend:
    def __init__(self, model, tokenizer, seed: int = 0):
        self.model, self.tokenizer, self.seed = model, tokenizer, seed

    def generate(self, conversations: Sequence[list[dict]], gen: GenerationParams) -> list[str]:
        return generate(self.model, self.tokenizer, conversations, gen, seed=self.seed)

    def perplexity(self, examples: Sequence[dict]) -> dict | None:
        return assistant_perplexity(self.model, self.tokenizer, examples)


class VLLMBackend:
    """vLLM offline inference; a LoRA adapter is served on top of its base through LoRARequest."""

    def __init__(self, base_dir: Path, adapter: Path | None, seed: int, trust_remote_code: bool):
        try:
            import vllm
            from vllm.lora.request import LoRARequest
        except ImportError:
            raise UserError("params.yaml: predict.backend is vllm but vllm is not installed "
                            "(pip install -r requirements-gpu.txt on a CUDA machine, or use backend: hf)") from None
        from synthtune.model.base_model import _source

        source, kwargs = _source(base_dir)
        lora = adapter is not None and (Path(adapter) / "adapter_config.json").exists()
        if adapter is not None and not lora:      # full fine-tune: its own weights
            source, kwargs = str(adapter), {}
        self.lora = LoRARequest(Path(adapter).name, 1, str(adapter)) if lora else None
        rank = json.loads((Path(adapter) / "adapter_config.json").read_text())["r"] if lora else 16
        self.llm = vllm.LLM(model=source, seed=seed, trust_remote_code=trust_remote_code, enable_lora=lora,
                            max_lora_rank=max(16, rank), **kwargs)
        self.vllm = vllm

    def generate(self, conversations: Sequence[list[dict]], gen: GenerationParams) -> list[str]:
        if gen.no_repeat_ngram_size:
            raise ParamsError("params.yaml: no_repeat_ngram_size is not supported by the vllm backend")
        sampling = self.vllm.SamplingParams(
            max_tokens=gen.max_new_tokens, temperature=gen.temperature if gen.do_sample else 0.0,
            top_k=(gen.top_k or -1) if gen.do_sample else -1, top_p=gen.top_p if gen.do_sample else 1.0,
            repetition_penalty=gen.repetition_penalty, stop=list(gen.stop) or None)
        if all(isinstance(c, str) for c in conversations):     # prompt/completion templates: raw prompts
            outputs = self.llm.generate(list(conversations), sampling, lora_request=self.lora, use_tqdm=False)
        else:
            outputs = self.llm.chat([list(c) for c in conversations], sampling, lora_request=self.lora,
                                    use_tqdm=False)
        return [cut_at_stop(o.outputs[0].text, gen.stop).strip() for o in outputs]

    def perplexity(self, examples: Sequence[dict]) -> dict | None:
        return None     # not measured on vLLM (see docs/architecture.md)


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible endpoint (openai SDK), concurrent, order kept."""

    def __init__(self, name: str, endpoint: OpenAIModelParams, seed: int = 0):
        from openai import OpenAI

        key = os.environ.get(endpoint.api_key_env)
        if not key:
            raise UserError(f"params.yaml: predict.openai.{name}: environment variable {endpoint.api_key_env} "
                            "is not set (the API key is read from it)")
        self.name, self.endpoint, self.seed = name, endpoint, seed
        self.client = OpenAI(base_url=endpoint.base_url, api_key=key, timeout=endpoint.timeout_s, max_retries=2)

    def _one(self, messages: list[dict], gen: GenerationParams) -> str:
        import openai

        options = {"temperature": gen.temperature, "top_p": gen.top_p} if gen.do_sample else {"temperature": 0.0}
        try:
            response = self.client.chat.completions.create(
                model=self.endpoint.model, messages=[{"role": "user", "content": messages}] if isinstance(messages, str)
                else [{"role": m["role"], "content": m["content"]} for m in messages],
                max_tokens=gen.max_new_tokens, stop=list(gen.stop)[:4] or None, seed=self.seed, **options)
        except openai.APIConnectionError as exc:
            raise UserError(f"predict.openai.{self.name}: cannot reach {self.endpoint.base_url} ({exc})") from None
        except openai.APIStatusError as exc:
            raise UserError(f"predict.openai.{self.name}: {self.endpoint.base_url} answered "
                            f"HTTP {exc.status_code}: {str(exc.message)[:200]}") from None
        return cut_at_stop(response.choices[0].message.content or "", gen.stop).strip()

    def generate(self, conversations: Sequence[list[dict]], gen: GenerationParams) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.endpoint.max_concurrency) as pool:
            return list(pool.map(lambda c: self._one(c if isinstance(c, str) else list(c), gen), conversations))

    def perplexity(self, examples: Sequence[dict]) -> dict | None:
        return None     # chat endpoints do not score given text


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
                 seed: int = 0) -> Iterator:
    """The backend that runs one roster entry; frees the model when the block ends."""
    if spec.endpoint is not None:
        yield OpenAIBackend(spec.name, spec.endpoint, seed)
    elif backend == "vllm":
        yield VLLMBackend(base_dir, spec.adapter, seed, trust_remote_code)
    else:
        from synthtune.model.base_model import load_base, load_tuned

        model, tokenizer = (load_tuned(base_dir, spec.adapter, trust_remote_code) if spec.adapter
                            else load_base(base_dir, trust_remote_code))
        yield HFBackend(model, tokenizer, seed)
    import gc

    gc.collect()


# --- what predict generates -------------------------------------------------------------------------

def eval_examples(examples: list[dict], max_dialogues: int) -> list[dict]:
    """The test dialogues that predict generates for and score scores: the first N (0: all)."""
    return examples[: max_dialogues or None]


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
