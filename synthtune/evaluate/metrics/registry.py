"""The METRICS registry: every scorecard metric family is one function registered by name.

    @register_metric("my_metric", sliced=("my_score",))
    def my_metric(ctx: MetricContext) -> dict:
        return {"my_score": ...}

A metric receives a `MetricContext` and returns flat `{key: number}`; the scorecard merges the
dicts in registration order (the import order in synthtune/evaluate/metrics/__init__.py), which
fixes the key order of metrics/score.json.

* scope "turns" (default): computed on a model's scored turns, then again on every slice (turn
  bucket, source) with `ctx.turns` the slice's turns; the keys in `sliced` appear in the slices
  as `<key>@<slice>`.
* scope "model": computed once per model, after every model's turn metrics (perplexity from the
  predict stage, API match of its answers to the API prompts); `ctx.turns` is all its turns.

`Turns.column(name, compute)` holds a per-turn value computed once on the model's whole set of
turns (the reply cosine, whose TF-IDF is fitted on all the replies) and read by the slices.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass
class Turns:
    """A model's scored turns (or a slice of them), in turn-id order."""
    refs: list[dict]                        # gold turns: intent, slots, reply, position, source
    outputs: list[str]                      # the model's raw outputs
    parsed: list[tuple]                     # (intent, slots, reply) read from each output
    index: list[int] | None = None          # positions in the whole set (None: this is the whole set)
    whole: Turns | None = None
    columns: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.refs)

    def subset(self, index: Sequence[int]) -> Turns:
        root = self.whole or self
        index = [self.index[i] for i in index] if self.index is not None else list(index)
        return Turns([root.refs[i] for i in index], [root.outputs[i] for i in index],
                     [root.parsed[i] for i in index], index, root)

    def column(self, name: str, compute: Callable[[Turns], list]) -> list:
        """Per-turn values computed once on the whole set, returned for these turns."""
        root = self.whole or self
        if name not in root.columns:
            root.columns[name] = compute(root)
        values = root.columns[name]
        return list(values) if self.index is None else [values[i] for i in self.index]


@dataclass
class MetricContext:
    """What a metric may read."""
    model: str                              # the model scored ("base", "tuned", "majority", ...)
    turns: Turns
    known_intents: set[str] = field(default_factory=set)   # every intent the state graphs have
    embedder: str = "tfidf"                 # score.embedder
    predictions_dir: Path | None = None     # <model>.jsonl, api/<model>.jsonl, perplexity.json
    api: Any = None                         # ApiIndex of the API documents
    api_prompts: list[dict] = field(default_factory=list)
    params: Any = None                      # the whole Params, for metrics with settings of their own
    source_intents: dict[str, set[str]] = field(default_factory=dict)   # per source: its domain's intents

    def intents_of(self, ref: dict) -> set[str]:
        """The intents a turn may have: its source's domain graph, else every graph's."""
        return self.source_intents.get(ref.get("source", ""), self.known_intents)


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[MetricContext], dict]
    scope: Literal["turns", "model"] = "turns"
    sliced: tuple[str, ...] = ()


METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, scope: Literal["turns", "model"] = "turns", sliced: Sequence[str] = ()):
    """Decorator: add a metric family to METRICS (a name registered twice is an error)."""
    if scope not in ("turns", "model"):
        raise ValueError(f"metric {name!r}: scope must be 'turns' or 'model', not {scope!r}")

    def add(compute: Callable[[MetricContext], dict]):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(name, compute, scope, tuple(sliced))
        return compute
    return add


def metrics_of(scope: str) -> list[Metric]:
    return [m for m in METRICS.values() if m.scope == scope]
