"""The run's own files, read once for the cards and the report: every figure they show comes from here.

A card or report must never print a number nobody measured, so a missing metrics file is an error
naming the file and the stage that writes it, not an empty cell.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from synthtune.core.errors import InputError

@dataclass(frozen=True)
class RunMetrics:
    """metrics/<stage>.json of one run (and metrics/generate/<source>.json per source)."""
    folder: Path

    def stage(self, name: str) -> dict:
        path = self.folder / f"{name}.json"
        if not path.is_file():
            # metrics/<stage>.json, or metrics/generate/<source>.json of stage generate@<source>
            writer = name.replace("/", "@")
            raise InputError(f"{path}: not found; it is written by the {writer} stage (dvc repro)")
        return json.loads(path.read_text(encoding="utf-8"))

    def optional(self, name: str) -> dict:
        path = self.folder / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    @staticmethod
    def generated(made: dict):
        """How many items a source's generate metrics say it made (dialogues, records or loaded rows)."""
        return made.get("dialogues", made.get("records", made.get("rows")))

    def generate(self, sources) -> dict[str, dict]:
        """{source: its generate metrics}, for exactly the sources in params (an orphaned file is ignored)."""
        return {name: self.stage(f"generate/{name}") for name in sources}


def read_tsv(path: Path) -> list[dict]:
    """A dvclive plot file (step<TAB>value...), as rows of floats; absent file: no rows."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        values = line.split("\t")
        rows.append({k: float(v) for k, v in zip(header, values) if k != "timestamp"})
    return rows


def fmt(value, digits: int = 4) -> str:
    """A metric as a card or report prints it: rounded floats, thousands for counts, '–' when absent."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if 0 < abs(value) < 1e-3:
        return f"{value:.3g}"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"


# The scorecard rows the cards and the report lead with: (metrics/score.json key, label, model-index type).
HEADLINE = [
    ("intent_accuracy", "intent accuracy (SynTOD)", "accuracy"),
    ("intent_accuracy_mapped", "intent accuracy, mapped to the nearest intent", "accuracy"),
    ("intent_macro_f1", "intent macro-F1", "f1"),
    ("slot_f1", "slot F1", "f1"),
    ("bleu", "reply BLEU", "bleu"),
    ("rouge_l", "reply ROUGE-L", "rouge"),
    ("chrf", "reply chrF", "chrf"),
    ("cosine", "reply cosine (MiniLM)", "cosine_similarity"),
    ("bleu@qa_docs", "document-QA BLEU", "bleu"),
    ("rouge_l@qa_docs", "document-QA ROUGE-L", "rouge"),
    ("perplexity", "val perplexity (assistant tokens)", "perplexity"),
]


def score_rows(score: dict, keys=None) -> list[tuple[str, str, dict]]:
    """(key, label, {model: value}) for each headline metric any model has."""
    rows = []
    for key, label, _ in HEADLINE if keys is None else [h for h in HEADLINE if h[0] in keys]:
        values = {model: metrics.get(key) for model, metrics in score.items()}
        if any(v is not None for v in values.values()):
            rows.append((key, label, values))
    return rows


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return "\n".join(lines)


def teacher_of(params, source) -> str:
    """Who wrote a source's text: the teacher backend (and model, for a real LLM), or none for loaded data."""
    if not hasattr(source, "teacher"):
        return "none (loaded data)"
    backend = source.teacher or params.teacher.backend
    return backend if backend == "template" else f"{backend} ({params.teacher.model})"
