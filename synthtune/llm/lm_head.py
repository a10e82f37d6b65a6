"""The LM head on chosen positions only: the logits a next-token loss needs, and no others.

A causal LM's head turns every position's hidden state into vocabulary logits. A loss on some
tokens (assistant turns, completions) needs them only where the next token is scored; with a large
vocabulary (SmolLM2: 49,152) and about half of a chat row in prompt tokens, the rest is a sizeable
share of a CPU step spent on nothing. Used by training's loss (synthtune.model.training) and by the
assistant-token perplexity (synthtune.llm.backends.hf). torch is imported inside functions only.
"""
from __future__ import annotations

from contextlib import contextmanager

__all__ = ["head_on_positions", "labelled_positions"]


def labelled_positions(labels):
    """(keep, targets) for a causal LM loss: `keep[b, t]` marks the positions whose next token is
    scored (its label is not -100), `targets` holds those next tokens in the same row-major order."""
    import torch

    following = labels[:, 1:]
    scored = following != -100
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = scored
    return keep, following[scored]


@contextmanager
def head_on_positions(model, keep):
    """Within the block, the model's LM head runs on the `keep` positions only: the forward returns
    [n_kept, vocab] logits in place of [batch, seq, vocab].

    A forward pre-hook on the output embeddings narrows the hidden states the head receives, so the
    model's own forward (its logit scaling or soft-capping included) runs unchanged, on fewer rows.
    `model` is the unwrapped model (a PEFT model passes the lookup through to its base).
    """
    head = model.get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda module, args: (args[0][keep], *args[1:]))
    try:
        yield
    finally:
        handle.remove()
