"""Reply metrics through local `evaluate` modules (synthtune/evaluate/metric_modules, loaded by
path: never the hub).

Scales: `bleu`, `chrf`, `rouge_1`, `rouge_2`, `rouge_l` 0-100 (sacrebleu's); `exact_match` and
`cosine` 0-1. Registered metrics (every scored turn, against the gold reply):
* `text`: bleu, chrf, rouge_1/2/l, exact_match (`bleu` and `rouge_l` per slice);
* `cosine`: mean `cosine` and `cosine_median` of the per-turn reply cosines, computed once per
  model (TF-IDF fitted on all its gold replies, or `score.embedder`) and averaged per slice too.
The RAG benchmark uses `cosine_scores` directly.
"""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from synthtune.core.errors import ParamsError
from synthtune.evaluate.metrics.registry import MetricContext, Turns, register_metric

METRIC_MODULES = Path(__file__).resolve().parents[1] / "metric_modules"


@lru_cache(maxsize=None)
def load_metric(name: str):
    """A local evaluate module by path (synthtune/evaluate/metric_modules/<name>/<name>.py)."""
    import evaluate

    return evaluate.load(str(METRIC_MODULES / name), keep_in_memory=True)


def text_metrics(hypotheses: list[str], refs: list[str]) -> dict:
    """bleu, chrf, rouge_1/2/l (0-100, 2 decimals) and exact_match (0-1, 4 decimals)."""
    out: dict = {}
    for name in ("bleu", "chrf", "rouge", "exact_match"):
        out.update(load_metric(name).compute(predictions=hypotheses, references=refs))
    return {k: round(v, 4 if k == "exact_match" else 2) for k, v in out.items()}


def cosine_scores(hypotheses: Sequence[str], refs: Sequence[str], embedder: str = "tfidf",
                  corpus: Sequence[str] | None = None, key: str = "score.embedder") -> list[float]:
    """Per-pair cosine of prediction and reference embeddings (`tfidf` IDF fitted on `corpus`);
    `key`: the params key of `embedder`, named by its errors."""
    if not hypotheses:
        return []
    from synthtune.text.embeddings import ST_PREFIX, resolve_sentence_transformer

    if embedder.startswith(ST_PREFIX):   # a packaged name (minilm) becomes its verified, extracted folder
        embedder = ST_PREFIX + resolve_sentence_transformer(embedder[len(ST_PREFIX):], key)
    try:
        result = load_metric("cosine").compute(predictions=list(hypotheses), references=list(refs),
                                               embedder=embedder, corpus=list(corpus) if corpus is not None else None)
    except (OSError, ValueError) as exc:   # e.g. a sentence-transformers model missing from the local cache
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamsError(f"{key}: embedder {embedder!r} cannot be loaded ({first})") from None
    return result["scores"]


@register_metric("text", sliced=("bleu", "rouge_l"))
def text(ctx: MetricContext) -> dict:
    turns = ctx.turns
    if not len(turns):
        return {}
    return text_metrics([p[2] for p in turns.parsed], [ref["reply"] for ref in turns.refs])


def reply_cosines(turns: Turns, embedder: str) -> list[float]:
    replies = [ref["reply"] for ref in turns.refs]
    return cosine_scores([p[2] for p in turns.parsed], replies, embedder, corpus=replies)


@register_metric("cosine", sliced=("cosine",))
def cosine(ctx: MetricContext) -> dict:
    if not len(ctx.turns):
        return {}
    sims = ctx.turns.column("cosine", lambda whole: reply_cosines(whole, ctx.embedder))
    return {"cosine": round(sum(sims) / len(sims), 4), "cosine_median": round(statistics.median(sims), 4)}
