"""Continuous (iteration-level) batching of teacher calls over one local transformers model.

The local server's default scheduler (synthtune.llm.server). A static batch (`LocalChatModel.generate`,
one `model.generate` call) runs until its longest answer ends: a request that arrives meanwhile
waits for the whole batch, and finished rows keep being computed. Here every decode step is one
forward of the rows active now; a row leaves the batch the step it ends (end token, its own
max_tokens, a stop string) and requests that arrived join at the next step (their prompts are
prefilled together, then their KV cache is concatenated to the running one, left-padded to the same
width; positions come from each row's own length, so padding changes no row's attention).

Per row, as in the static path: greedy at temperature 0, else temperature + top_p sampling from a
generator of the row's own (seeded by the request's seed and sample, so a sampled answer does not
depend on what shares its batch); JSON rows are masked by their schema's xgrammar matcher.

transformers ships a continuous-batching manager too (`generate_batch`, paged attention); it takes
per-request temperature/top-k/top-p only, not a stateful grammar per request, which every JSON teacher
call needs (docs/architecture.md, "Continuous batching"). The cache surgery below needs plain
`DynamicLayer`s (full attention: Llama, Qwen, SmolLM...); `supported` says whether a model has them.
torch is imported inside functions only.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from synthtune.llm.backends.hf import left_pad
from synthtune.llm.requests import Call, draw_seed


@dataclass
class Row:
    call: Call
    prompt: list[int]
    done: Callable[[dict], None]            # receives the answer row when the row ends
    new: list[int] = field(default_factory=list)
    matcher: object | None = None
    generator: object | None = None


def supported(model) -> bool:
    """Whether the model's KV cache is made of plain full-attention layers (what `_merge` can pad)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


class ContinuousDecoder:
    """The active rows, their KV cache and attention mask; `step` admits newcomers and decodes one token."""

    def __init__(self, chat_model, max_rows: int = 16):
        self.chat = chat_model
        self.model, self.tokenizer = chat_model.load()
        self.max_rows = max_rows
        self.ends = chat_model.end_tokens()
        self.rows: list[Row] = []
        self.cache = None           # DynamicCache over self.rows (the last chosen token of each is not in it yet)
        self.mask = None            # (rows, cache width) 1 on real tokens
        self.steps = 0
        self.step_rows: dict[int, int] = {}     # decode steps by number of rows in them

    @property
    def free(self) -> int:
        return self.max_rows - len(self.rows)

    def step(self, arrivals: Sequence[tuple[Call, Callable[[dict], None]]] = ()) -> None:
        """Prefill the arrivals (at most `free`) and add them; then one decode step of the rows that were already active."""
        import torch

        with torch.inference_mode():
            if self.rows:
                self._decode()
            if arrivals:
                self._admit(list(arrivals)[:self.free])

    # -- internals --------------------------------------------------------------------------------

    def _admit(self, arrivals: list) -> None:
        import torch

        rows = [self._row(call, done) for call, done in arrivals]
        ids, mask = left_pad([r.prompt for r in rows], self.tokenizer.pad_token_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        # logits of the last position only: the LM head over every prompt token is most of a prefill's cost
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
        keep = self._choose(rows, out.logits[:, -1])
        cache = out.past_key_values
        if len(keep) < len(rows):
            cache.batch_select_indices(torch.tensor(keep))
            mask = mask[keep]
            rows = [rows[i] for i in keep]
        if not rows:
            return
        if self.rows:
            self.cache, self.mask = _merge(self.cache, self.mask, cache, mask)
        else:
            self.cache, self.mask = cache, mask
        self.rows.extend(rows)

    def _decode(self) -> None:
        import torch

        rows = self.rows
        ids = torch.tensor([[r.new[-1]] for r in rows])
        mask = torch.cat([self.mask, torch.ones(len(rows), 1, dtype=self.mask.dtype)], dim=1)
        positions = torch.tensor([[len(r.prompt) + len(r.new) - 1] for r in rows])
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.steps += 1
        self.step_rows[len(rows)] = self.step_rows.get(len(rows), 0) + 1
        self.cache, self.mask = out.past_key_values, mask
        keep = self._choose(rows, out.logits[:, -1])
        if len(keep) < len(rows):
            self.rows = [rows[i] for i in keep]
            if not self.rows:
                self.cache = self.mask = None
                return
            self.cache.batch_select_indices(torch.tensor(keep))
            self.mask = self.mask[keep]
            first = int(self.mask.any(0).nonzero()[0])     # columns no remaining row uses
            if first:
                _crop_left(self.cache, first)
                self.mask = self.mask[:, first:]

    def _row(self, call: Call, done) -> Row:
        import torch

        row = Row(call=call, prompt=self.chat.prompt_ids(call.messages), done=done)
        if call.json:
            import xgrammar as xgr

            row.matcher = xgr.GrammarMatcher(self.chat.constraints().grammar(call.schema))
        if call.temperature > 0:
            row.generator = torch.Generator().manual_seed(draw_seed(call.seed, call.sample))
        return row

    def _choose(self, rows: list[Row], logits) -> list[int]:
        """Pick each row's next token; finish the rows that end. Returns the indices of rows that go on."""
        import torch

        logits = logits.float()
        constrained = [i for i, r in enumerate(rows) if r.matcher is not None and not r.matcher.is_terminated()]
        if constrained:
            import xgrammar as xgr

            bitmask = xgr.allocate_token_bitmask(len(rows), logits.shape[-1])
            bitmask.fill_(-1)
            for i in constrained:
                rows[i].matcher.fill_next_token_bitmask(bitmask, i)
            xgr.apply_token_bitmask_inplace(logits, bitmask)
        keep = []
        for i, row in enumerate(rows):
            token = _pick(logits[i], row.call, row.generator)
            if row.matcher is not None and not row.matcher.is_terminated():
                row.matcher.accept_token(token)
            if token in self.ends:
                row.done(self.chat.answer(row.call, row.prompt, row.new, "stop"))
                continue
            row.new.append(token)
            if len(row.new) >= row.call.max_tokens:
                row.done(self.chat.answer(row.call, row.prompt, row.new, "length"))
            elif row.call.stop and _stopped(self.tokenizer, row):
                row.done(self.chat.answer(row.call, row.prompt, row.new, "stop"))
            else:
                keep.append(i)
        return keep


def _pick(logits, call: Call, generator) -> int:
    """Greedy at temperature 0; else temperature, then nucleus (top_p) sampling from the row's generator."""
    import torch

    if call.temperature == 0 or generator is None:
        return int(logits.argmax())
    scores = logits / call.temperature
    top_p = call.top_p or 1.0
    if top_p < 1.0:
        ordered, index = scores.sort(descending=True)
        probs = ordered.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p           # keep the smallest prefix reaching top_p
        scores = scores.scatter(0, index[drop], float("-inf"))
    return int(torch.multinomial(scores.softmax(-1), 1, generator=generator))


def _stopped(tokenizer, row: Row) -> bool:
    text = tokenizer.decode(row.new, skip_special_tokens=True)
    return any(s and s in text for s in row.call.stop)


def _merge(cache_a, mask_a, cache_b, mask_b):
    """Two caches over different rows as one: the narrower left-padded with zeros (masked out)."""
    import torch

    width = max(mask_a.shape[1], mask_b.shape[1])

    def widen(t, n):            # (rows, heads, seq, dim): pad seq on the left
        return torch.nn.functional.pad(t, (0, 0, n, 0)) if n else t

    pad_a, pad_b = width - mask_a.shape[1], width - mask_b.shape[1]
    for la, lb in zip(cache_a.layers, cache_b.layers):
        la.keys = torch.cat([widen(la.keys, pad_a), widen(lb.keys, pad_b)], dim=0)
        la.values = torch.cat([widen(la.values, pad_a), widen(lb.values, pad_b)], dim=0)
    mask = torch.cat([torch.nn.functional.pad(mask_a, (pad_a, 0)), torch.nn.functional.pad(mask_b, (pad_b, 0))])
    return cache_a, mask


def _crop_left(cache, n: int) -> None:
    """Drop the first n positions of every layer (columns that no active row attends to)."""
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, n:]
        layer.values = layer.values[:, :, n:]
