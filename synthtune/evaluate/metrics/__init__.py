"""Scorecard metrics: one file per metric family, each registered in METRICS (see registry.py).

Registration order is the import order below, and it is the key order of metrics/score.json:
the turn metrics (dialogue state, reply text, reply cosine), then the per-model ones (perplexity,
API match). A new metric is one file with `@register_metric(...)` and its line here.
"""
from synthtune.evaluate.metrics.registry import METRICS, Metric, MetricContext, Turns, metrics_of, register_metric
from synthtune.evaluate.metrics import dialogue_state, text, perplexity, api_match  # noqa: E402,F401  (registers)

__all__ = ["METRICS", "Metric", "MetricContext", "Turns", "metrics_of", "register_metric"]
