"""Few-shot prompts: the nearest train turns of the same source, added while the prompt stays in budget.

Only the train split supplies shots, and never from the example's own dialogue (its group), so a
val or test prompt cannot contain its own answer. Shots are added nearest first and stop at the
first one that would push the prompt past `format.few_shot_budget` tokens.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from synthtune.model.formats.instruction import lead_with_system
from synthtune.model.formats.layouts import Exchange, Layout, Spec, exchanges
from synthtune.model.formats.prompts import first_prompt_length, text_ids


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


def with_shots(spec: Spec, candidates: list[Exchange], layout: Layout, tokenizer, budget: int) -> Spec:
    """Add shots nearest first while the prompt stays within `budget` tokens."""
    for shot in candidates:
        trial = replace(spec, shots=spec.shots + (shot,))
        if len(text_ids(tokenizer, layout(trial)[0])) > budget:
            break
        spec = trial
    return spec


def chat_with_shots(example: dict, shots: list[Exchange], tokenizer, budget: int) -> dict:
    """A chat example whose leading system message lists the shots (system turns are never trained)."""
    def build(chosen):
        text = "Examples:\n\n" + "\n\n".join(f"User: {s.user}\nAssistant: {s.answer}" for s in chosen)
        return lead_with_system(example, text)

    chosen = []
    for shot in shots:
        if first_prompt_length(build(chosen + [shot]), tokenizer) > budget:
            break
        chosen.append(shot)
    return build(chosen) if chosen else example
