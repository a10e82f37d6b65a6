"""Exact match rate after normalization: lowercase, whitespace runs collapsed to one space, stripped."""
import re

import datasets
import evaluate

_DESCRIPTION = "Share (0-1) of predictions equal to their reference after lowercasing and collapsing whitespace."


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description="predictions, references: lists of str",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        hits = [normalize(p) == normalize(r) for p, r in zip(predictions, references)]
        return {"exact_match": sum(hits) / len(hits) if hits else 0.0}
