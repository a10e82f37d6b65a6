"""Structured outputs for local models: decoding constrained to a JSON schema (or any JSON object).

What OpenAI, vLLM and llama.cpp servers do for `response_format`, done for the `hf` teacher and the
project's own server (synthtune.llm.server) with xgrammar's grammar matchers: at every step the
tokens that cannot continue a valid answer are masked out, so a 135M model that left alone fills
`{"text": ...}` with nested objects or emoji writes the object the request asks for.

* `JSONConstraints(tokenizer, vocab_size)`: compiles each distinct schema once (canonical JSON as
  the key); `None` means the built-in grammar of any JSON object (json_object mode).
* `logits_processor(grammars)`: one per `generate` call, one grammar per batch row; a row without
  a grammar (a plain-text request in the same batch) is left alone.

Whitespace between JSON tokens is not allowed (`any_whitespace=False`): a small model otherwise
spends its token budget on newlines. xgrammar is imported inside functions only (its import pulls
torch); on CPU it needs no triton (the bitmask is applied by its C++ kernel).
"""
from __future__ import annotations

import json
from collections.abc import Sequence


class JSONConstraints:
    """Compiled grammars for one tokenizer, cached by schema."""

    def __init__(self, tokenizer, vocab_size: int):
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(info)
        self._compiled: dict[str, object] = {}

    def grammar(self, schema: dict | None):
        key = json.dumps(schema, sort_keys=True) if schema is not None else ""
        if key not in self._compiled:
            self._compiled[key] = (self._compiler.compile_json_schema(key, any_whitespace=False)
                                   if schema is not None else self._compiler.compile_builtin_json_grammar())
        return self._compiled[key]


def logits_processor(grammars: Sequence[object | None]):
    """A transformers LogitsProcessor masking each row to its grammar (None: unconstrained)."""
    import torch
    import xgrammar as xgr
    from transformers import LogitsProcessor

    class _RowGrammars(LogitsProcessor):
        def __init__(self):
            self.matchers = [xgr.GrammarMatcher(g) if g is not None else None for g in grammars]
            self.constrained = [i for i, m in enumerate(self.matchers) if m is not None]
            self.bitmask = None
            self.started = False

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            if not self.constrained:
                return scores
            if self.bitmask is None:
                self.bitmask = xgr.allocate_token_bitmask(len(self.matchers), scores.shape[-1])
            for i in self.constrained:
                matcher = self.matchers[i]
                if self.started and not matcher.is_terminated():
                    # the token chosen last step; False only if it was outside the mask, which cannot happen
                    matcher.accept_token(int(input_ids[i, -1]))
            self.started = True
            self.bitmask.fill_(-1)              # all bits set: unconstrained rows keep every token
            for i in self.constrained:
                if not self.matchers[i].is_terminated():
                    self.matchers[i].fill_next_token_bitmask(self.bitmask, i)
            xgr.apply_token_bitmask_inplace(scores, self.bitmask)
            return scores

    return _RowGrammars()
