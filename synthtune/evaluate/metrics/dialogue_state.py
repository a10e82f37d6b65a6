"""Dialogue-state metrics: intent accuracy / macro F1 / micro P-R-F1 and token-level slot P-R-F1.

Over the turns with a gold intent (a QA or instruction turn has none and is scored as a reply only):

* `intent_accuracy`; `intent_macro_f1` (mean F1 over the gold classes); `intent_micro_precision`
  = correct / turns with a parsed intent, `intent_micro_recall` = correct / turns,
  `intent_micro_f1`; `unparsed_rate` (no annotation line could be read); `out_of_graph_rate`
  (a parsed intent the state graph of the turn's domain does not have: counted wrong in the raw
  figures; a source without a graph is judged against every graph's intents).
* `intent_accuracy_mapped`, `intent_macro_f1_mapped`: the same after SynTOD's mapping of each
  out-of-graph intent to the nearest intent of that graph by `score.embedder` cosine (MiniLM, as the seed;
  nothing is mapped with tfidf). Raw and mapped side by side show how much of a model's intent
  error is naming rather than understanding.
* slots: every slot `key=value` pair is a unit, a list value gives one unit per element; values
  compare normalized (strings lowercased, whitespace collapsed, stripped; numbers exactly:
  3 == 3.0 == "3", 3 != 3.5); a turn contributes |pred ∩ gold| (as multisets) true positives;
  `slot_precision` / `slot_recall` / `slot_f1` are summed over turns (micro). An unparsed
  prediction has no slots.

`intent_accuracy` and `slot_f1` are also reported per slice.
"""
from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

from synthtune.evaluate.metrics.registry import MetricContext, register_metric


def macro_f1(gold: list[str], predicted: list[str | None]) -> float:
    """Macro F1 over the gold intent classes (a predicted unknown/None intent is wrong for every class)."""
    classes = sorted(set(gold))
    total = 0.0
    for label in classes:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted))
        total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return total / len(classes) if classes else 0.0


def prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _norm_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)) and math.isfinite(value):
        return repr(float(value))
    text = re.sub(r"\s+", " ", str(value)).strip().lower()
    try:
        number = float(text)
        return repr(number) if math.isfinite(number) else text
    except ValueError:
        return text


def slot_units(slots: dict | None) -> Counter:
    """The slot units of one annotation: key=value pairs, one per element of a list value."""
    units: Counter = Counter()
    for key, value in (slots or {}).items():
        key = str(key).strip().lower()
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if item is None or (isinstance(item, str) and not item.strip()):
                continue
            units[(key, _norm_value(item))] += 1
    return units


def slot_counts(gold: dict | None, predicted: dict | None) -> tuple[int, int, int]:
    """(true positives, predicted units, gold units) of one turn."""
    g, p = slot_units(gold), slot_units(predicted)
    return sum((g & p).values()), sum(p.values()), sum(g.values())


def nearest_intents(predicted: list[str | None], known: set[str], embedder: str) -> list[str | None]:
    """SynTOD's mapping: each predicted intent outside the known set becomes the known intent whose name
    is nearest by sentence-embedding cosine (underscores read as spaces). Known and unparsed (None)
    intents stay; with a non-sentence embedder (tfidf) nothing is mapped."""
    from synthtune.text.embeddings import ST_PREFIX, embed_texts

    outside = sorted({p for p in predicted if p is not None and p not in known})
    if not outside or not known or not embedder.startswith(ST_PREFIX):
        return list(predicted)
    names = sorted(known)
    vectors, _ = embed_texts([n.replace("_", " ") for n in names + outside], embedder, dims=2, seed=0,
                             key="score.embedder")
    similarity = vectors[len(names):] @ vectors[: len(names)].T
    nearest = {name: names[int(np.argmax(row))] for name, row in zip(outside, similarity)}
    return [nearest.get(p, p) for p in predicted]


def mapped_within_domain(turns, ctx: MetricContext) -> list[str | None]:
    """nearest_intents per domain: each turn's prediction is mapped among its own domain's intents."""
    mapped: list[str | None] = [p[0] for p in turns.parsed]
    groups: dict[frozenset, list[int]] = {}
    for i, ref in enumerate(turns.refs):
        groups.setdefault(frozenset(ctx.intents_of(ref)), []).append(i)
    for known, index in groups.items():
        for i, m in zip(index, nearest_intents([mapped[i] for i in index], set(known), ctx.embedder)):
            mapped[i] = m
    return mapped


@register_metric("dialogue_state", sliced=("intent_accuracy", "slot_f1"))
def dialogue_state(ctx: MetricContext) -> dict:
    mapped_all = ctx.turns.column("mapped_intent", lambda whole: mapped_within_domain(whole, ctx))
    rows = [(ref, p, m) for ref, p, m in zip(ctx.turns.refs, ctx.turns.parsed, mapped_all)
            if ref.get("intent") is not None]
    if not rows:
        return {}
    gold = [ref["intent"] for ref, _, _ in rows]
    pred = [p[0] for _, p, _ in rows]
    mapped = [m for _, _, m in rows]
    correct = sum(g == p for g, p in zip(gold, pred))
    n_parsed = sum(p is not None for p in pred)
    mp, mr, mf = prf(correct, n_parsed, len(gold))
    slot_tp = slot_pred = slot_gold = 0
    for ref, (intent, slots, _), _ in rows:
        tp, np_, ng = slot_counts(ref.get("slots"), slots if intent is not None else {})
        slot_tp, slot_pred, slot_gold = slot_tp + tp, slot_pred + np_, slot_gold + ng
    sp, sr, sf = prf(slot_tp, slot_pred, slot_gold)
    return {
        "intent_accuracy": round(correct / len(gold), 4), "intent_macro_f1": round(macro_f1(gold, pred), 4),
        "intent_micro_precision": round(mp, 4), "intent_micro_recall": round(mr, 4),
        "intent_micro_f1": round(mf, 4),
        "unparsed_rate": round(1 - n_parsed / len(gold), 4),
        "out_of_graph_rate": round(sum(p is not None and p not in ctx.intents_of(ref)
                                       for (ref, _, _), p in zip(rows, pred)) / len(gold), 4),
        "intent_accuracy_mapped": round(sum(g == m for g, m in zip(gold, mapped)) / len(gold), 4),
        "intent_macro_f1_mapped": round(macro_f1(gold, mapped), 4),
        "slot_precision": round(sp, 4), "slot_recall": round(sr, 4), "slot_f1": round(sf, 4),
    }
