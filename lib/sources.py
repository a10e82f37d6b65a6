"""Sources: turn one `sources.<name>` params entry into canonical records.

Each source names a `kind`: graph-guided dialogues simulated by the offline `template`
teacher, or one of the loaders of lib.loaders for the user's own data (alpaca, QA JSON, chat,
raw text, OASST trees, CSV, Hugging Face datasets). LLM teachers plug in here by kind.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lib.config import SourceParams
from lib.dialogue import generate_dialogues, load_catalog, load_graph
from lib.errors import InputError
from lib.io import require_file
from lib.loaders import load_source


@dataclass
class SourceOutput:
    records: list[dict]
    rejects: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def generate_source(name: str, source: SourceParams, input_path: Path, seed: int) -> SourceOutput:
    """Records of one source: simulated dialogues, or the user's file through its loader."""
    if source.kind == "dialogues":
        graph_path = require_file(Path(input_path).parent / "graphs" / f"{source.domain}.json")
        records = generate_dialogues(load_catalog(require_file(input_path)), load_graph(graph_path),
                                     n=source.n_dialogues, seed=seed, max_turns=source.max_turns, source=name,
                                     use_graph=source.use_graph)
        if not records:
            raise InputError(f"sources.{name}: generated no dialogues")
        return SourceOutput(records, [], dialogue_metrics(records))
    loaded = load_source(source.kind, Path(input_path), source=name, domain=source.domain,
                         mapping=dict(source.mapping), options=dict(source.options))
    metrics = {"records": len(loaded.records), "rejected": len(loaded.rejects),
               "skipped": getattr(loaded, "skipped", 0)}
    if any(r.get("messages") for r in loaded.records):
        metrics.update(dialogue_metrics(loaded.records))
    return SourceOutput(loaded.records, loaded.rejects, metrics)


def distinct_n(texts: list[str], n: int) -> float:
    grams, total = set(), 0
    for text in texts:
        words = text.lower().split()
        for i in range(len(words) - n + 1):
            grams.add(tuple(words[i:i + n]))
            total += 1
    return len(grams) / total if total else 0.0


def dialogue_metrics(records: list[dict]) -> dict:
    """Data metrics of a dialogue source: size, turns, intent spread, lexical diversity."""
    user_turns = [m for r in records for m in r.get("messages") or [] if m["role"] == "user"]
    intents = Counter((m.get("annotations") or {}).get("intent", "<none>") for m in user_turns)
    texts = [m["content"] for m in user_turns]
    out = {
        "dialogues": len(records),
        "turns_per_dialogue": round(sum(len(r.get("messages") or []) for r in records) / max(1, len(records)), 2),
        "user_turns": len(user_turns),
        "distinct_intents": len(intents),
        "distinct_1": round(distinct_n(texts, 1), 4),
        "distinct_2": round(distinct_n(texts, 2), 4),
    }
    out.update({f"intent_share_{k}": round(v / max(1, len(user_turns)), 4) for k, v in sorted(intents.items())})
    return out
