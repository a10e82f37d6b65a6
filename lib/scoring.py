"""Score: join predictions with references and compute the scorecard.

metrics/score.json is nested {model: {metric: value}} with flat metric names, so
`dvc metrics diff` reads as a table: intent_accuracy, intent_macro_f1, bleu, rouge_l, ...
`majority` is the majority-class baseline: the most frequent training intent and the most
frequent training reply, for every turn.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from lib.errors import InputError
from lib.generation import turn_id
from lib.templates import parse_annotation


def known_intents(graph_dir: Path) -> set[str]:
    """Every intent any domain's state graph can produce: predictions outside it are reported."""
    from lib.dialogue import load_graph

    intents: set[str] = set()
    for path in sorted(Path(graph_dir).glob("*.json")):
        graph = load_graph(path)
        intents.update(graph.get("start", {}), graph.get("common", {}), graph.get("edges", {}))
        for targets in graph.get("edges", {}).values():
            intents.update(targets)
    if not intents:
        raise InputError(f"{graph_dir}: no state graphs (*.json) found")
    return intents


def references(examples: Sequence[dict]) -> dict[str, dict]:
    return {turn_id(ex, turn): turn for ex in examples for turn in ex["gold"]}


def corpus_bleu(hypotheses: list[str], refs: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(hypotheses, [refs]).score


def mean_rouge_l(hypotheses: list[str], refs: list[str]) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    scores = [scorer.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in zip(hypotheses, refs)]
    return 100.0 * sum(scores) / len(scores) if scores else 0.0


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


def score_turns(refs: dict[str, dict], predictions: list[dict], known_intents: set[str], source: str) -> dict:
    """Metrics of one model's predictions; ids must match the references exactly."""
    pred_ids = [p["id"] for p in predictions]
    if set(pred_ids) != set(refs) or len(pred_ids) != len(refs):
        missing, extra = len(set(refs) - set(pred_ids)), len(set(pred_ids) - set(refs))
        raise InputError(f"{source}: prediction ids do not match the references "
                         f"({missing} missing, {extra} unknown, {len(pred_ids)} rows for {len(refs)} turns)")
    gold_intents, pred_intents, hyps, gold_replies = [], [], [], []
    unparsed = outside = 0
    for row in predictions:
        ref = refs[row["id"]]
        intent, _slots, reply = parse_annotation(row["output"])
        unparsed += intent is None
        if intent is not None and intent not in known_intents:
            outside += 1
        gold_intents.append(ref["intent"])
        pred_intents.append(intent)
        hyps.append(reply)
        gold_replies.append(ref["reply"])
    n = len(gold_intents)
    accuracy = sum(g == p for g, p in zip(gold_intents, pred_intents)) / n if n else 0.0
    return {
        "intent_accuracy": round(accuracy, 4),
        "intent_macro_f1": round(macro_f1(gold_intents, pred_intents), 4),
        "bleu": round(corpus_bleu(hyps, gold_replies), 2),
        "rouge_l": round(mean_rouge_l(hyps, gold_replies), 2),
        "unparsed_rate": round(unparsed / n, 4) if n else 0.0,
        "unknown_intent_rate": round(outside / n, 4) if n else 0.0,
        "turns": n,
    }


def majority_predictions(train_examples: Sequence[dict], refs: dict[str, dict]) -> list[dict]:
    from lib.templates import annotation_line

    turns = [turn for ex in train_examples for turn in ex["gold"]]
    if not turns:
        raise InputError("train split holds no annotated turns: cannot build the majority baseline")
    intent = Counter(t["intent"] for t in turns).most_common(1)[0][0]
    reply = Counter(t["reply"] for t in turns).most_common(1)[0][0]
    output = annotation_line({"intent": intent, "slots": {}}) + "\n" + reply
    return [{"id": key, "output": output} for key in refs]


def confusion_rows(refs: dict[str, dict], predictions: list[dict]) -> list[dict]:
    """(actual, predicted) pairs for the dvc confusion plot."""
    rows = []
    for row in predictions:
        intent, _, _ = parse_annotation(row["output"])
        rows.append({"actual": refs[row["id"]]["intent"], "predicted": intent or "<unparsed>"})
    return rows
