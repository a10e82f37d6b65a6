"""`perplexity`: the model's perplexity on the assistant tokens of the val split, measured by the
predict stage (predictions/perplexity.json, {model: {"perplexity", "val_tokens"}}); absent for a
model without one (the majority baseline, a backend that cannot score tokens)."""
from __future__ import annotations

import json

from synthtune.evaluate.metrics.registry import MetricContext, register_metric


@register_metric("perplexity", scope="model")
def perplexity(ctx: MetricContext) -> dict:
    stats_file = ctx.predictions_dir / "perplexity.json" if ctx.predictions_dir is not None else None
    stats = json.loads(stats_file.read_text()) if stats_file is not None and stats_file.is_file() else {}
    value = stats.get(ctx.model, {}).get("perplexity")
    return {"perplexity": value} if value is not None else {}
