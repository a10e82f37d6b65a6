"""The one batched HF generator (left-padded batches) and the perplexity of assistant tokens.

* `generate` / `generate_ids`: predict's path. Prompts rendered as training rendered them, sorted
  by length so each batch pads little, left padding, greedy unless `do_sample`; batched greedy
  output equals one-prompt-at-a-time output (tested). Stop strings end a sequence early and are cut.
* `LocalChatModel`: the `hf` teacher. Batches keep the teacher's order (one sampling setting per
  batch, seeded per batch from the request's seed and sample), so answers stay what the cache holds.
Both pad and generate through `left_padded_generate`. torch is imported inside functions only.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from synthtune.core.config import GenerationParams
from synthtune.llm.errors import TeacherModelNotFound
from synthtune.llm.lm_head import head_on_positions, labelled_positions
from synthtune.llm.requests import Call, cut_at_stop, draw_seed


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int):
    """(input_ids, attention_mask) tensors of prompts left-padded to the longest: a decoder's last
    position is then every row's next token (static batches and the continuous scheduler's prefill)."""
    import torch

    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts])
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return input_ids, attention


def left_padded_generate(model, prompts: Sequence[Sequence[int]], pad_id: int, **generate_kwargs):
    """The new tokens (a tensor, one row per prompt, padded on the right) of one left-padded batch."""
    import torch

    input_ids, attention = left_pad(prompts, pad_id)
    with torch.inference_mode():
        generated = model.generate(input_ids=input_ids, attention_mask=attention, pad_token_id=pad_id,
                                   **generate_kwargs)
    return generated[:, input_ids.shape[1]:]


# --- predict: length-sorted batches of prompts rendered like training ----------------------------

def render_prompts(tokenizer, conversations: Sequence[list[dict] | str]) -> list[list[int]]:
    """Token ids of each prompt: chat messages through the chat template, or a prompt string
    (qa/alpaca/seq2seq/syntod/text rows) tokenized exactly as training did: `tokenizer(text=...)`, as TRL
    does and as synthtune.model.formats.text_ids does (tests/model prove the prompt is a token prefix of the
    training row). Not imported from model/: the llm layer stays below the model phase."""
    return [tokenizer(text=c)["input_ids"] if isinstance(c, str) else
            tokenizer.apply_chat_template(list(c), add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"] for c in conversations]


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
    kwargs = {**hf_generation_kwargs(gen), **generate_kwargs}
    if gen.stop:
        kwargs.update(stop_strings=list(gen.stop), tokenizer=tokenizer)
    torch.manual_seed(seed)
    model.eval()
    size = gen.batch_size
    for start in tqdm(range(0, len(order), size), desc="generate", disable=len(order) <= size):
        batch = order[start:start + size]
        new_tokens = left_padded_generate(model, [prompts[i] for i in batch], tokenizer.pad_token_id,
                                          eos_token_id=tokenizer.eos_token_id, **kwargs)
        for row, index in enumerate(batch):
            text = tokenizer.decode(new_tokens[row], skip_special_tokens=True)
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
        width = max(len(ids) for ids, _ in batch)      # right padding: the loss looks at every position
        input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in batch])
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
        labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask)] + [-100] * (width - len(ids))
                               for ids, mask in batch])
        keep, targets = labelled_positions(labels)
        with torch.inference_mode(), head_on_positions(model, keep):   # logits of the scored positions only
            logits = model(input_ids=input_ids, attention_mask=attention).logits.float()
        nll += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        count += targets.numel()
    return {"perplexity": round(math.exp(nll / count), 4) if count else None, "val_tokens": count}


class HFBackend:
    """Predict's local models: `generate(conversations, gen)` and `perplexity(examples)`."""

    def __init__(self, model, tokenizer, seed: int = 0):
        self.model, self.tokenizer, self.seed = model, tokenizer, seed

    def generate(self, conversations: Sequence[list[dict]], gen: GenerationParams) -> list[str]:
        return generate(self.model, self.tokenizer, conversations, gen, seed=self.seed)

    def perplexity(self, examples: Sequence[dict]) -> dict | None:
        return assistant_perplexity(self.model, self.tokenizer, examples)


# --- the hf teacher ---------------------------------------------------------------------------------

def row_temperatures(temperatures: Sequence[float]):
    """A LogitsProcessor giving each batch row its own temperature (generate takes one): logits / T,
    and for T = 0 everything but the argmax masked, so sampling returns exactly the greedy token."""
    import torch
    from transformers import LogitsProcessor

    temps = torch.tensor([[t if t > 0 else 1.0] for t in temperatures])
    greedy = torch.tensor([t == 0 for t in temperatures])

    class _RowTemperatures(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores = scores / temps.to(scores.dtype)
            if greedy.any():
                top = scores[greedy].argmax(-1, keepdim=True)
                masked = torch.full_like(scores[greedy], float("-inf")).scatter(-1, top, 0.0)
                scores[greedy] = masked
            return scores

    return _RowTemperatures()


class LocalChatModel:
    """A local transformers causal LM answering teacher calls; loaded on the first batch."""

    def __init__(self, model_id: str):
        self.model_id = model_id
        self.model = self.tokenizer = None
        self._constraints = None

    def load(self):
        if self.model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                self.tokenizer = AutoTokenizer.from_pretrained(self.model_id)
                self.model = AutoModelForCausalLM.from_pretrained(self.model_id).eval()
            except (OSError, ValueError) as exc:
                why = ("no such folder, and not in the local hub cache" if not Path(self.model_id).exists()
                       else str(exc).splitlines()[0])
                raise TeacherModelNotFound(f"teacher.model: cannot load local model {self.model_id!r}: {why}") from None
            self.tokenizer.padding_side = "left"
            if self.tokenizer.pad_token_id is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
        return self.model, self.tokenizer

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        tok = self.tokenizer
        if tok.chat_template:
            return list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"])
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"   # a base model
        return tok(text, add_special_tokens=False)["input_ids"]

    def constraints(self):
        """The JSON grammars of this model's tokenizer (built on the first JSON call)."""
        if self._constraints is None:
            from synthtune.llm.backends.constrained import JSONConstraints

            model, tok = self.load()
            self._constraints = JSONConstraints(tok, model.config.vocab_size)
        return self._constraints

    def generate(self, calls: Sequence[Call]) -> list[dict]:
        """One batch of calls sharing sampling params; greedy when temperature is 0. JSON calls are
        decoded under their schema's grammar (any JSON object without one), as servers do for
        `response_format`; the others in the batch are left unconstrained."""
        import torch

        model, tok = self.load()
        prompts = [self.prompt_ids(c.messages) for c in calls]
        pad = tok.pad_token_id
        first = calls[0]
        temperatures = [c.temperature for c in calls]
        mixed = len(set(temperatures)) > 1
        sampling = {"do_sample": max(temperatures) > 0, "logits_processor": []}
        if any(c.json for c in calls):
            from synthtune.llm.backends.constrained import logits_processor

            grammars = [self.constraints().grammar(c.schema) if c.json else None for c in calls]
            sampling["logits_processor"].append(logits_processor(grammars))
        if mixed:       # the server's batches: each row at its own temperature, greedy rows exactly greedy
            sampling["logits_processor"].append(row_temperatures(temperatures))
            sampling.update(temperature=1.0, top_p=first.top_p or 1.0)
        elif first.temperature > 0:
            sampling.update(temperature=first.temperature, top_p=first.top_p)
        if sampling["do_sample"]:
            torch.manual_seed(draw_seed(first.seed, first.sample))
        new_tokens = left_padded_generate(model, prompts, pad, max_new_tokens=max(c.max_tokens for c in calls),
                                          **sampling)
        stops = self.end_tokens()
        rows = []
        for call, prompt, row in zip(calls, prompts, new_tokens.tolist()):
            # ends at the first end token (the padding after it may be the same id); else at max_tokens
            end = next((i for i, t in enumerate(row[:call.max_tokens]) if t in stops), None)
            new, finish = (row[:end], "stop") if end is not None else (row[:call.max_tokens], "length")
            rows.append(self.answer(call, prompt, [t for t in new if t != pad], finish))
        return rows

    def end_tokens(self) -> set[int]:
        """The token ids that end an answer: the tokenizer's end token and the generation config's."""
        model, tok = self.load()
        eos = model.generation_config.eos_token_id
        return {tok.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}

    def answer(self, call: Call, prompt: list[int], new: list[int], finish: str) -> dict:
        """The answer row of a call from its new tokens (end token excluded): text cut at the call's stop strings."""
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        if call.stop:
            cut = cut_at_stop(text, call.stop)
            finish = "stop" if cut != text else finish
            text = cut.strip()
        return {"text": text, "finish_reason": finish, "model": self.model_id,
                "prompt_tokens": len(prompt), "completion_tokens": len(new)}
