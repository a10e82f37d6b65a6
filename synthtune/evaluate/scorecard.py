"""Score: join predictions with references and compute the scorecard.

metrics/score.json is {model: {metric: value}} with flat metric names, so `dvc metrics diff`
reads as a table. Text metrics go through local `evaluate` modules (lib/metric_modules, loaded
by path: no hub). Per scored turn (teacher-forced on the gold history):

* intent (turns with a gold intent): `intent_accuracy`; `intent_macro_f1` (mean F1 over the gold
  classes); `intent_micro_precision` = correct / turns with a parsed intent, `intent_micro_recall`
  = correct / turns, `intent_micro_f1`; `unparsed_rate` (no annotation line could be read);
  `out_of_graph_rate` (a parsed intent no state graph has: counted wrong, never mapped to a near one).
* slots, token level: every slot `key=value` pair is a unit, a list value gives one unit per
  element; values compare normalized (strings lowercased, whitespace collapsed, stripped;
  numbers exactly: 3 == 3.0 == "3", 3 != 3.5); a turn contributes |pred ∩ gold| (as multisets)
  true positives; `slot_precision` / `slot_recall` / `slot_f1` are summed over turns (micro).
  An unparsed prediction has no slots.
* reply (every scored turn): `bleu`, `chrf`, `rouge_1`, `rouge_2`, `rouge_l` (0-100),
  `exact_match`, `cosine`, `cosine_median` (0-1) against the gold reply.
* slices: `<metric>@t1`, `@t2-3`, `@t4-6`, `@t7+` by turn position in the dialogue
  (`score.turn_buckets`), and `<metric>@<source>` when the test split holds several sources.
* `perplexity` (assistant tokens of val, from predict) and `api_match_*` (synthtune.evaluate.metrics.api_match) when present.

`majority` is the majority-class baseline: the most frequent training intent and the most
frequent training reply, for every turn.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from synthtune.evaluate.metrics.api_match import load_api_docs, score_api_predictions
from synthtune.core.errors import InputError
from synthtune.evaluate.predict import eval_turns, require_turns, turn_id
from synthtune.core.io import read_jsonl
from synthtune.model.formats import parse_annotation
from synthtune.evaluate.metrics.text import cosine_scores, text_metrics

SLICE_METRICS = ("turns", "intent_accuracy", "slot_f1", "bleu", "rouge_l", "cosine")


# --- intents and slots ---------------------------------------------------------------------------

def known_intents(graph_dir: Path) -> set[str]:
    """Every intent any domain's state graph can produce: predictions outside it are reported."""
    from synthtune.generate.dialogue.recipe import load_graph

    intents: set[str] = set()
    for path in sorted(Path(graph_dir).glob("*.json")):
        graph = load_graph(path)
        intents.update(graph.get("start", {}), graph.get("common", {}), graph.get("edges", {}))
        for targets in graph.get("edges", {}).values():
            intents.update(targets)
    if not intents:
        raise InputError(f"{graph_dir}: no state graphs (*.json) found")
    return intents


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


# --- the scorecard ------------------------------------------------------------------------------------

def references(examples: Sequence[dict]) -> dict[str, dict]:
    """{turn id: gold turn + its 1-based position among the dialogue's scored turns and its source}."""
    return {turn_id(ex, turn): {**turn, "position": pos, "source": ex.get("source", "")}
            for ex in examples for pos, turn in enumerate(eval_turns(ex), start=1)}


def check_ids(refs: dict, predictions: list[dict], source: str, what: str = "references") -> None:
    pred_ids = [p["id"] for p in predictions]
    if set(pred_ids) != set(refs) or len(pred_ids) != len(refs):
        missing, extra = len(set(refs) - set(pred_ids)), len(set(pred_ids) - set(refs))
        raise InputError(f"{source}: prediction ids do not match the {what} "
                         f"({missing} missing, {extra} unknown, {len(pred_ids)} rows for {len(refs)} turns)")


def bucket_labels(starts: Sequence[int]) -> list[tuple[int, str]]:
    """[1, 2, 4, 7] -> [(1, 't1'), (2, 't2-3'), (4, 't4-6'), (7, 't7+')]."""
    starts = sorted(set(starts))
    labels = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 1 if i + 1 < len(starts) else None
        labels.append((start, f"t{start}+" if end is None else f"t{start}" if end == start else f"t{start}-{end}"))
    return labels


def bucket_of(position: int, labels: list[tuple[int, str]]) -> str | None:
    found = None
    for start, label in labels:
        if position >= start:
            found = label
    return found


def _core(rows: list[tuple[dict, str]], known: set[str], cosines: list[float]) -> dict:
    """Metrics of (reference, output) pairs."""
    n = len(rows)
    metrics: dict = {"turns": n}
    parsed = [parse_annotation(out) for _, out in rows]
    intent_rows = [(ref, p) for (ref, _), p in zip(rows, parsed) if ref.get("intent") is not None]
    if intent_rows:
        gold = [ref["intent"] for ref, _ in intent_rows]
        pred = [p[0] for _, p in intent_rows]
        correct = sum(g == p for g, p in zip(gold, pred))
        n_parsed = sum(p is not None for p in pred)
        mp, mr, mf = prf(correct, n_parsed, len(gold))
        slot_tp = slot_pred = slot_gold = 0
        for ref, (intent, slots, _) in intent_rows:
            tp, np_, ng = slot_counts(ref.get("slots"), slots if intent is not None else {})
            slot_tp, slot_pred, slot_gold = slot_tp + tp, slot_pred + np_, slot_gold + ng
        sp, sr, sf = prf(slot_tp, slot_pred, slot_gold)
        metrics.update({
            "intent_accuracy": round(correct / len(gold), 4), "intent_macro_f1": round(macro_f1(gold, pred), 4),
            "intent_micro_precision": round(mp, 4), "intent_micro_recall": round(mr, 4),
            "intent_micro_f1": round(mf, 4),
            "unparsed_rate": round(1 - n_parsed / len(gold), 4),
            "out_of_graph_rate": round(sum(p is not None and p not in known for p in pred) / len(gold), 4),
            "slot_precision": round(sp, 4), "slot_recall": round(sr, 4), "slot_f1": round(sf, 4),
        })
    if n:
        metrics.update(text_metrics([p[2] for p in parsed], [ref["reply"] for ref, _ in rows]))
        metrics["cosine"] = round(sum(cosines) / n, 4)
        metrics["cosine_median"] = round(statistics.median(cosines), 4)
    return metrics


def score_turns(refs: dict[str, dict], predictions: list[dict], known_intents: set[str], source: str, *,
                embedder: str = "tfidf", turn_buckets: Sequence[int] = (1, 2, 4, 7)) -> dict:
    """Metrics of one model's predictions, overall and by slice; ids must match the references exactly."""
    card, _ = score_turns_with_cosines(refs, predictions, known_intents, source, embedder=embedder,
                                       turn_buckets=turn_buckets)
    return card


def score_turns_with_cosines(refs: dict[str, dict], predictions: list[dict], known: set[str], source: str, *,
                             embedder: str = "tfidf", turn_buckets: Sequence[int] = (1, 2, 4, 7)
                             ) -> tuple[dict, list[float]]:
    check_ids(refs, predictions, source)
    rows = [(refs[p["id"]], p["output"]) for p in sorted(predictions, key=lambda p: p["id"])]
    replies = [ref["reply"] for ref, _ in rows]
    cosines = cosine_scores([parse_annotation(out)[2] for _, out in rows], replies, embedder, corpus=replies)
    card = _core(rows, known, cosines)
    slices: dict[str, list[int]] = {}
    labels = bucket_labels(turn_buckets)
    for i, (ref, _) in enumerate(rows):
        bucket = bucket_of(ref["position"], labels)
        if bucket:
            slices.setdefault(bucket, []).append(i)
    if len({ref["source"] for ref, _ in rows}) > 1:
        for i, (ref, _) in enumerate(rows):
            slices.setdefault(ref["source"], []).append(i)
    for name, idx in slices.items():
        sub = _core([rows[i] for i in idx], known, [cosines[i] for i in idx])
        card.update({f"{k}@{name}": v for k, v in sub.items() if k in SLICE_METRICS})
    return card, cosines


def majority_predictions(train_examples: Sequence[dict], refs: dict[str, dict]) -> list[dict]:
    from synthtune.model.formats import annotation_line

    turns = [turn for ex in train_examples for turn in ex["gold"]]
    if not turns:
        raise InputError("train split holds no annotated turns: cannot build the majority baseline")
    intent = Counter(t["intent"] for t in turns).most_common(1)[0][0]
    reply = Counter(t["reply"] for t in turns).most_common(1)[0][0]
    output = annotation_line({"intent": intent, "slots": {}}) + "\n" + reply
    return [{"id": key, "output": output} for key in refs]


def confusion_rows(refs: dict[str, dict], predictions: list[dict]) -> list[dict]:
    """(actual, predicted) pairs for the dvc confusion plot (turns with a gold intent)."""
    rows = []
    for row in sorted(predictions, key=lambda p: p["id"]):
        if refs[row["id"]].get("intent") is None:
            continue
        intent, _, _ = parse_annotation(row["output"])
        rows.append({"actual": refs[row["id"]]["intent"], "predicted": intent or "<unparsed>"})
    return rows


def read_predictions(folder: Path) -> dict[str, list[dict]]:
    """{model: rows} of every <model>.jsonl in a predictions folder, sorted by name."""
    files = sorted(Path(folder).glob("*.jsonl"))
    if not files:
        raise InputError(f"{folder}: no prediction files (*.jsonl); run the predict stage first")
    return {f.stem: read_jsonl(f, allow_empty=True) for f in files}


def build_scorecard(test: list[dict], train: list[dict], predictions_dir: Path, graphs: Path, api_dir: Path,
                    api_prompts: list[dict], params, test_source: str = "test split") -> tuple[dict, dict, list]:
    """(scorecard, {model: per-turn cosines}, confusion rows) of every model in predictions_dir + majority."""
    api = load_api_docs(api_dir)              # a bad API document fails before any scoring
    require_turns(test, test_source)
    refs = references(test)
    intents = known_intents(graphs)
    predictions = read_predictions(predictions_dir)
    if any(ref.get("intent") is not None for ref in refs.values()):
        predictions["majority"] = majority_predictions(train, refs)
    card, cosines = {}, {}
    for name, rows in predictions.items():
        card[name], cosines[name] = score_turns_with_cosines(
            refs, rows, intents, str(Path(predictions_dir) / f"{name}.jsonl"),
            embedder=params.score.embedder, turn_buckets=params.score.turn_buckets)
    stats_file = Path(predictions_dir) / "perplexity.json"
    stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
    for name in card:
        if stats.get(name, {}).get("perplexity") is not None:
            card[name]["perplexity"] = stats[name]["perplexity"]
        api_file = Path(predictions_dir) / "api" / f"{name}.jsonl"
        if api_file.is_file():
            card[name].update(score_api_predictions(api, api_prompts, read_jsonl(api_file, allow_empty=True),
                                                    str(api_file)))
    who = params.score.confusion_model
    confusion = confusion_rows(refs, predictions[who]) if who in predictions else []
    return card, cosines, confusion
