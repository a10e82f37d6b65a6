"""Sources: turn one `sources.<name>` params entry into canonical records.

Each source names a `kind`: graph-guided dialogues simulated by the offline `template`
teacher, or one of the loaders of synthtune.generate.loaders for the user's own data (alpaca, QA JSON, chat,
raw text, OASST trees, CSV, Hugging Face datasets). LLM teachers plug in here by kind.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from synthtune.core.config import PrepareParams, SourceParams, TeacherParams
from synthtune.generate.dialogue.recipe import generate_dialogues, load_catalog, load_graph
from synthtune.core.errors import InputError
from synthtune.core.io import require_file
from synthtune.generate.loaders import load_source
from synthtune.llm.teacher import Teacher


@dataclass
class SourceOutput:
    records: list[dict]
    rejects: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)


def generate_source(name: str, source: SourceParams, input_path: Path, seed: int,
                    teacher: Teacher | None = None, prepare: PrepareParams | None = None) -> SourceOutput:
    """Records of one source: simulated dialogues, QA written from documents, or the user's file
    through its loader. `teacher` (synthtune.llm.teacher.open_teacher) answers the generators' prompts."""
    if source.kind == "docqa":
        from synthtune.generate.docqa import generate_docqa

        out = generate_docqa(name, source, Path(input_path), teacher or Teacher(TeacherParams()), seed)
        return SourceOutput(out.records, out.rejects, out.metrics)
    if source.kind == "dialogues":
        records = simulate_dialogues(name, source, Path(input_path), seed, prepare)
        rejects: list[dict] = []
        if teacher is not None and teacher.backend != "template":
            # the LLM simulator: same walks and slots, every turn voiced by the teacher
            from synthtune.generate.dialogue.voicing import voice_dialogues
            from synthtune.llm.teacher import ChatRequest

            records, rejects = voice_dialogues(records, source.domain, teacher, ChatRequest)
        if not records:
            raise InputError(f"sources.{name}: generated no dialogues"
                             + (f" ({len(rejects)} quarantined: {rejects[0]['reason']})" if rejects else ""))
        return SourceOutput(records, rejects, {**dialogue_metrics(records), "quarantined": len(rejects)})
    loaded = load_source(source.kind, Path(input_path), source=name, domain=source.domain,
                         mapping=dict(source.mapping), options=dict(source.options))
    metrics = {"records": len(loaded.records), "rejected": len(loaded.rejects),
               "skipped": getattr(loaded, "skipped", 0)}
    if any(r.get("messages") for r in loaded.records):
        metrics.update(dialogue_metrics(loaded.records))
    return SourceOutput(loaded.records, loaded.rejects, metrics)


def simulate_dialogues(name: str, source: SourceParams, catalog_path: Path, seed: int,
                       prepare: PrepareParams | None = None) -> list[dict]:
    """Graph-guided dialogues of the source's domain; the graph is graphs/<domain>.json beside
    the catalog. With `use_graph: false` (the ablation) only the dialogues that prepare will put
    in the train split lose the graph: val and test stay graph-generated, so both arms are scored
    on the same test set."""
    from synthtune.generate.dialogue.ecommerce import generate_shop_dialogues, load_products
    from synthtune.curate.prepare import split_of

    simulators = {"recipe": (load_catalog, generate_dialogues),
                  "ecommerce": (load_products, generate_shop_dialogues)}
    if source.domain not in simulators:
        raise InputError(f"sources.{name}.domain: {source.domain!r} has no dialogue simulator "
                         f"(known: {', '.join(sorted(simulators))})")
    load, generate = simulators[source.domain]
    graph_path = require_file(catalog_path.parent / "graphs" / f"{source.domain}.json")
    graph = load_graph(graph_path)
    if graph["domain"] != source.domain:
        raise InputError(f"{graph_path}: graph domain {graph['domain']!r} != sources.{name}.domain {source.domain!r}")
    keep_graph = (lambda group: split_of(group, seed, prepare) != "train") if prepare is not None else None
    return generate(load(require_file(catalog_path)), graph, n=source.n_dialogues, seed=seed,
                    max_turns=source.max_turns, source=name, use_graph=source.use_graph, keep_graph=keep_graph)


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
