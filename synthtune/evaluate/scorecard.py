"""Score: join predictions with references and compute the scorecard over the METRICS registry.

metrics/score.json is {model: {metric: value}} with flat metric names, so `dvc metrics diff`
reads as a table. Each metric family is one file in synthtune/evaluate/metrics, registered in
METRICS (synthtune.evaluate.metrics.registry); the scorecard of one model is, in order:

* `turns` and every "turns" metric on the scored turns (teacher-forced on the gold history):
  dialogue_state (intent accuracy / macro F1 / micro P-R-F1, raw and mapped to the nearest graph
  intent, out-of-graph and unparsed rates,
  token-level slot P-R-F1), text (`bleu`, `chrf`, `rouge_1`, `rouge_2`, `rouge_l` 0-100,
  `exact_match`), cosine (`cosine`, `cosine_median` 0-1 against the gold reply);
* `intent_accuracy_ci_low/high`, `slot_f1_ci_low/high`: percentile 95% intervals from
  `score.bootstrap` resamples of the test dialogues (seeded by `seed`);
* slices: `<metric>@t1`, `@t2-3`, `@t4-6`, `@t7+` by turn position in the dialogue
  (`score.turn_buckets`), and `<metric>@<source>` when the test split holds several sources, for
  `turns` and each metric's `sliced` keys;
* every "model" metric: `perplexity` (assistant tokens of val, from predict) and the `api_*` keys
  (synthtune.evaluate.metrics.api_match: documents `api.docs`, prompts `api.prompts`) when present;
  an undefined ratio (precision of a model that makes no API call) is left out, never written as 0.

`majority` is the majority-class baseline: the most frequent training intent and the most
frequent training reply, for every turn.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from synthtune.core.errors import InputError
from synthtune.core.io import read_jsonl
from synthtune.evaluate.metrics import MetricContext, Turns, metrics_of
from synthtune.evaluate.metrics.api_match import load_api_docs
from synthtune.evaluate.predict import eval_turns, require_turns, turn_id
from synthtune.model.formats import parse_annotation


def domain_intents(graph_dir: Path) -> dict[str, set[str]]:
    """{domain: every intent its state graph can produce} of the graphs in graph_dir."""
    from synthtune.generate.dialogue import load_graph

    domains: dict[str, set[str]] = {}
    for path in sorted(Path(graph_dir).glob("*.json")):
        graph = load_graph(path)
        intents = domains.setdefault(graph.get("domain") or path.stem, set())
        intents.update(graph.get("start", {}), graph.get("common", {}), graph.get("edges", {}))
        for targets in graph.get("edges", {}).values():
            intents.update(targets)
    if not any(domains.values()):
        raise InputError(f"{graph_dir}: no state graphs (*.json) found")
    return domains


def source_intents(domains: dict[str, set[str]], sources: dict) -> dict[str, set[str]]:
    """{source: its domain graph's intents} (domains: domain_intents) for the sources whose domain has
    a graph. A prediction is judged against its own dialogue's domain (SynTOD maps within the domain):
    a recipe intent predicted in a shop dialogue is out of graph there, though another graph has it."""
    return {name: domains[source.domain] for name, source in sources.items()
            if getattr(source, "domain", None) in domains}


# --- the scorecard ------------------------------------------------------------------------------------

def references(examples: Sequence[dict]) -> dict[str, dict]:
    """{turn id: gold turn + its 1-based position among the dialogue's scored turns and its source}."""
    return {turn_id(ex, turn): {**turn, "position": pos, "source": ex.get("source", ""), "dialogue": ex["id"]}
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


def scored_turns(refs: dict[str, dict], predictions: list[dict], source: str) -> Turns:
    """One model's turns in id order; ids must match the references exactly."""
    check_ids(refs, predictions, source)
    rows = sorted(predictions, key=lambda p: p["id"])
    outputs = [p["output"] for p in rows]
    return Turns([refs[p["id"]] for p in rows], outputs, [parse_annotation(out) for out in outputs])


def turn_metrics(ctx: MetricContext) -> dict:
    """`turns` and every "turns" metric of ctx.turns, in registration order."""
    card: dict = {"turns": len(ctx.turns)}
    for metric in metrics_of("turns"):
        card.update(metric.compute(ctx))
    return card


def slices(turns: Turns, turn_buckets: Sequence[int]) -> dict[str, list[int]]:
    """{slice name: turn positions}: turn buckets first, then sources when there are several."""
    out: dict[str, list[int]] = {}
    labels = bucket_labels(turn_buckets)
    for i, ref in enumerate(turns.refs):
        bucket = bucket_of(ref["position"], labels)
        if bucket:
            out.setdefault(bucket, []).append(i)
    if len({ref["source"] for ref in turns.refs}) > 1:
        for i, ref in enumerate(turns.refs):
            out.setdefault(ref["source"], []).append(i)
    return out


BOOTSTRAPPED = ("intent_accuracy", "slot_f1")   # the headline figures that get 95% intervals


def bootstrap_intervals(ctx: MetricContext, resamples: int, seed: int) -> dict:
    """Percentile 95% intervals of the headline dialogue-state figures: test dialogues (not turns, which
    are correlated within a dialogue) resampled with replacement `resamples` times, seeded.

    `<key>_ci_low` / `<key>_ci_high` for each key of BOOTSTRAPPED the model has; {} without intents."""
    from synthtune.evaluate.metrics.dialogue_state import dialogue_state

    if not resamples or not dialogue_state(ctx):
        return {}
    groups: dict[str, list[int]] = {}
    for i, ref in enumerate(ctx.turns.refs):
        groups.setdefault(ref.get("dialogue", ""), []).append(i)
    members = list(groups.values())
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {key: [] for key in BOOTSTRAPPED}
    for _ in range(resamples):
        index = [i for g in rng.integers(len(members), size=len(members)) for i in members[g]]
        values = dialogue_state(replace(ctx, turns=ctx.turns.subset(index)))
        for key in BOOTSTRAPPED:
            if key in values:
                samples[key].append(values[key])
    out = {}
    for key, values in samples.items():
        if values:
            low, high = np.percentile(values, [2.5, 97.5])
            out.update({f"{key}_ci_low": round(float(low), 4), f"{key}_ci_high": round(float(high), 4)})
    return out


def score_model(ctx: MetricContext, turn_buckets: Sequence[int] = (1, 2, 4, 7), bootstrap: int = 0,
                seed: int = 0) -> dict:
    """The turn metrics of one model, overall and by slice (`turns` and each metric's sliced keys),
    with `bootstrap` resamples for the 95% intervals of the headline figures (0: none)."""
    card = turn_metrics(ctx)
    card.update(bootstrap_intervals(ctx, bootstrap, seed))
    for name, idx in slices(ctx.turns, turn_buckets).items():
        sub = replace(ctx, turns=ctx.turns.subset(idx))
        card[f"turns@{name}"] = len(idx)
        for metric in metrics_of("turns"):
            if metric.sliced:
                values = metric.compute(sub)
                card.update({f"{k}@{name}": v for k, v in values.items() if k in metric.sliced})
    return card


def score_turns(refs: dict[str, dict], predictions: list[dict], known_intents: set[str], source: str, *,
                embedder: str = "tfidf", turn_buckets: Sequence[int] = (1, 2, 4, 7)) -> dict:
    """Metrics of one model's predictions, overall and by slice; ids must match the references exactly."""
    card, _ = score_turns_with_cosines(refs, predictions, known_intents, source, embedder=embedder,
                                       turn_buckets=turn_buckets)
    return card


def score_turns_with_cosines(refs: dict[str, dict], predictions: list[dict], known: set[str], source: str, *,
                             embedder: str = "tfidf", turn_buckets: Sequence[int] = (1, 2, 4, 7)
                             ) -> tuple[dict, list[float]]:
    turns = scored_turns(refs, predictions, source)
    card = score_model(MetricContext(source, turns, known, embedder), turn_buckets)
    return card, turns.columns.get("cosine", [])


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
    domains = domain_intents(graphs)
    intents = set().union(*domains.values())
    per_source = source_intents(domains, params.sources)
    predictions = read_predictions(predictions_dir)
    if any(ref.get("intent") is not None for ref in refs.values()):
        predictions["majority"] = majority_predictions(train, refs)
    card, cosines, contexts = {}, {}, {}
    for name, rows in predictions.items():    # every model's turn metrics first: bad predictions fail early
        turns = scored_turns(refs, rows, str(Path(predictions_dir) / f"{name}.jsonl"))
        contexts[name] = MetricContext(name, turns, intents, params.score.embedder, Path(predictions_dir), api,
                                       list(api_prompts), params, per_source)
        card[name] = score_model(contexts[name], params.score.turn_buckets, params.score.bootstrap, params.seed)
        cosines[name] = turns.columns.get("cosine", [])
    for name, ctx in contexts.items():
        for metric in metrics_of("model"):
            card[name].update(metric.compute(ctx))
    who = params.score.confusion_model
    confusion = confusion_rows(refs, predictions[who]) if who in predictions else []
    return card, cosines, confusion
