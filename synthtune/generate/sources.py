"""Sources: turn one `sources.<name>` params entry into canonical records.

`SOURCES` maps each `kind` to the function that makes its records:
- `dialogues`: graph-guided task-oriented dialogues of a domain of synthtune.generate.dialogue,
  simulated offline by the `template` teacher, or voiced turn by turn by an LLM teacher;
- `docqa`: questions and answers written from documents (synthtune.generate.docqa);
- every loader kind of synthtune.generate.loaders.LOADERS (alpaca, QA JSON, chat, raw text, OASST
  trees, CSV, Hugging Face datasets, and any format registered later): the user's own file.
A generator kind is registered here with `register_source(kind)` (its params model, with its own
keys, lives in synthtune.core.config); a loader kind needs only its loader file.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from synthtune.core.config import PrepareParams, SourceParams, TeacherParams
from synthtune.core.errors import InputError
from synthtune.core.io import require_file
from synthtune.generate.loaders import LOADERS, load_source
from synthtune.llm.teacher import Teacher


@dataclass
class SourceOutput:
    records: list[dict]
    rejects: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    skipped_by: dict[str, int] = field(default_factory=dict)   # valid data left out on purpose, by reason


class NoRecords(InputError):
    """A source made no records at all. `rejects` are its refused rows: the stage writes them
    before it fails, so the user can read why."""

    def __init__(self, message: str, rejects: list[dict]):
        super().__init__(message)
        self.rejects = rejects


# (name, source params, input path, seed, teacher or None, prepare params or None) -> SourceOutput
SourceFn = Callable[[str, SourceParams, Path, int, "Teacher | None", "PrepareParams | None"], SourceOutput]
GENERATORS: dict[str, SourceFn] = {}


def register_source(kind: str):
    """Decorator: register a generator of records for source `kind`."""
    def decorate(fn: SourceFn) -> SourceFn:
        GENERATORS[kind] = fn
        return fn
    return decorate


class _Sources(Mapping):
    """kind -> SourceFn: the generators registered here, then every kind of LOADERS (live: a loader
    registered later is a source kind at once)."""

    def __getitem__(self, kind: str) -> SourceFn:
        if kind in GENERATORS:
            return GENERATORS[kind]
        if kind in LOADERS:
            return loader_source
        raise KeyError(kind)

    def __iter__(self) -> Iterator[str]:
        yield from GENERATORS
        yield from (kind for kind in LOADERS if kind not in GENERATORS)

    def __len__(self) -> int:
        return len(GENERATORS.keys() | LOADERS.keys())


SOURCES: Mapping[str, SourceFn] = _Sources()


def generate_source(name: str, source: SourceParams, input_path: Path, seed: int,
                    teacher: Teacher | None = None, prepare: PrepareParams | None = None) -> SourceOutput:
    """Records of one source: simulated dialogues, QA written from documents, or the user's file
    through its loader. `teacher` (synthtune.llm.teacher.open_teacher) answers the generators' prompts."""
    make = SOURCES.get(source.kind)
    if make is None:
        raise InputError(f"sources.{name}.kind: unknown source kind {source.kind!r} (known: {', '.join(SOURCES)})")
    out = make(name, source, Path(input_path), seed, teacher, prepare)
    if (sha := prompts_sha256(source.kind)) is not None:
        out.metrics["prompts_sha256"] = sha
    return out


def prompts_sha256(kind: str) -> str | None:
    """The prompt version of a generator kind: sha256 (12 hex) of the modules that write its prompts and
    templates, so two runs' dataset cards say whether their teacher saw the same prompts; None for loaders."""
    import hashlib
    import inspect

    if kind == "dialogues":
        from synthtune.generate.dialogue import ecommerce_templates, recipe_templates, voicing
        modules = (voicing, recipe_templates, ecommerce_templates)
    elif kind == "docqa":
        from synthtune.generate import docqa
        modules = (docqa,)
    elif kind == "api_code":
        from synthtune.generate import api_code
        modules = (api_code,)
    else:
        return None
    digest = hashlib.sha256()
    for module in modules:
        digest.update(inspect.getsource(module).encode("utf-8"))
    return digest.hexdigest()[:12]


# ---------------------------------------------------------------- generators

@register_source("docqa")
def docqa_source(name: str, source: SourceParams, input_path: Path, seed: int,
                 teacher: Teacher | None, prepare: PrepareParams | None) -> SourceOutput:
    from synthtune.generate.docqa import generate_docqa

    out = generate_docqa(name, source, input_path, teacher or Teacher(TeacherParams()), seed)
    return SourceOutput(out.records, out.rejects, out.metrics)


@register_source("api_code")
def api_code_source(name: str, source: SourceParams, input_path: Path, seed: int,
                    teacher: Teacher | None, prepare: PrepareParams | None) -> SourceOutput:
    from synthtune.generate.api_code import api_code_records, read_api_functions, text_records, voice_api_code

    functions = read_api_functions(Path(input_path))
    records = api_code_records(name, source.domain, functions, source.n_records, seed)
    if teacher is not None and teacher.backend != "template":
        from synthtune.llm.teacher import ChatRequest

        records = voice_api_code(records, functions, teacher, ChatRequest, source.reasks)
    voiced = [r["meta"].get("voiced", True) for r in records]
    texts = text_records(records) if source.text_records else []
    metrics = {"records": len(records) + len(texts), "text_records": len(texts), "functions": len(functions),
               "functions_covered": len({f for r in records for f in r["meta"]["functions"]}),
               "voiced_rate": round(sum(voiced) / max(1, len(voiced)), 4)}
    return SourceOutput(records + texts, [], metrics)


@register_source("dialogues")
def dialogue_source(name: str, source: SourceParams, input_path: Path, seed: int,
                    teacher: Teacher | None, prepare: PrepareParams | None) -> SourceOutput:
    records = simulate_dialogues(name, source, input_path, seed, prepare)
    rejects: list[dict] = []
    if teacher is not None and teacher.backend != "template":
        # the LLM simulator: same walks and slots, every turn voiced by the teacher
        from synthtune.generate.dialogue import voice_dialogues
        from synthtune.generate.dialogue.voicing import voicing_metrics
        from synthtune.llm.teacher import ChatRequest

        records, rejects = voice_dialogues(records, source.domain, teacher, ChatRequest, reasks=source.reasks,
                                           intent_check=source.intent_check, intent_margin=source.intent_margin,
                                           intent_check_key=f"sources.{name}.intent_check")
        extra = voicing_metrics(records)
    else:
        extra = {}
    if not records:
        raise NoRecords(f"sources.{name}: generated no dialogues"
                        + (f" ({len(rejects)} quarantined: {rejects[0]['reason']})" if rejects else ""), rejects)
    return SourceOutput(records, rejects, {**dialogue_metrics(records), "quarantined": len(rejects), **extra})


def simulate_dialogues(name: str, source: SourceParams, catalog_path: Path, seed: int,
                       prepare: PrepareParams | None = None) -> list[dict]:
    """Graph-guided dialogues of the source's domain; the graph is graphs/<domain>.json beside
    the catalog. With `use_graph: false` (the ablation) only the dialogues that prepare will put
    in the train split lose the graph: val and test stay graph-generated, so both arms are scored
    on the same test set."""
    from synthtune.curate.prepare import split_of
    from synthtune.generate.dialogue import DOMAINS, get_domain, load_graph

    if source.domain not in DOMAINS:
        raise InputError(f"sources.{name}.domain: {source.domain!r} has no dialogue simulator "
                         f"(known: {', '.join(sorted(DOMAINS))})")
    domain = get_domain(source.domain)
    graph_path = require_file(catalog_path.parent / "graphs" / f"{source.domain}.json")
    graph = load_graph(graph_path)
    if graph["domain"] != source.domain:
        raise InputError(f"{graph_path}: graph domain {graph['domain']!r} != sources.{name}.domain {source.domain!r}")
    keep_graph = (lambda group: split_of(group, seed, prepare) != "train") if prepare is not None else None
    return domain.generate(domain.load_catalog(require_file(catalog_path)), graph, n=source.n_dialogues, seed=seed,
                           max_turns=source.max_turns, source=name, use_graph=source.use_graph,
                           keep_graph=keep_graph)


# ---------------------------------------------------------------- the user's own data

def loader_source(name: str, source: SourceParams, input_path: Path, seed: int,
                  teacher: Teacher | None, prepare: PrepareParams | None) -> SourceOutput:
    """Every loader kind: the file through LOADERS[source.kind]; bad rows are rejects."""
    # DVC runs every stage from the repository root: a path that leaves it is refused unless opted in
    loaded = load_source(source.kind, input_path, source=name, domain=source.domain,
                         mapping=dict(source.mapping), options=dict(source.options),
                         repo_root=None if source.allow_outside_repo else Path.cwd())
    metrics = {"records": len(loaded.records), "rejected": len(loaded.rejects),
               "skipped": getattr(loaded, "skipped", 0)}
    if any(r.get("messages") for r in loaded.records):
        metrics.update(dialogue_metrics(loaded.records))
    return SourceOutput(loaded.records, loaded.rejects, metrics, dict(loaded.skipped_by))


def require_records(name: str, source: SourceParams, input_path: Path, out: SourceOutput,
                    rejects_path: Path) -> None:
    """A source that made no records fails here, in its own generate stage, with one line saying
    why (every row rejected, every row skipped by the options, or no rows at all), instead of an
    empty raw file that stops `prepare` two stages later. Call it after writing `rejects_path`."""
    if out.records:
        return
    input_path = Path(input_path)
    row = "row" if source.kind in LOADERS else "item"
    rows, n = f"{row}s", len(out.rejects)
    reasons = f"reasons in {rejects_path}; first: {_first_reject(out.rejects, input_path)}" if out.rejects else ""
    if out.skipped_by:
        skipped = ", ".join(f"{reason}: {count}" for reason, count in sorted(out.skipped_by.items()))
        rejected = f", {n} {row if n == 1 else rows} rejected ({reasons})" if out.rejects else ""
        raise InputError(f"sources.{name}: no records kept from {input_path}: "
                         f"{sum(out.skipped_by.values())} skipped by its options ({skipped}){rejected}")
    if out.rejects:
        every = f"all {n} {rows} of {input_path} were" if n > 1 else f"the only {row} of {input_path} was"
        raise InputError(f"sources.{name}: {every} rejected ({reasons})")
    if input_path.is_file() and _blank(input_path):
        raise InputError(f"{input_path}: file is empty (only whitespace)")
    raise InputError(f"sources.{name}: {input_path} has no {rows}")


def _first_reject(rejects: list[dict], input_path: Path) -> str:
    """`line N: reason` of the first reject (`file:N: reason` when it names another file; a reason
    that numbers its row itself, "item 3: ..." or "row 3: ...", as it is)."""
    first = rejects[0]
    if first["reason"].startswith(("item ", "row ")):
        return first["reason"]
    same_file = first.get("file") in (None, "", str(input_path))
    # `line` is a file line or null (a docqa chunk, an hf row, a voiced dialogue): then say what it is
    place = next((f"{key} {first[key]}" for key in ("item", "row", "chunk") if first.get(key) is not None), None)
    if first.get("line") is not None:
        place = f"line {first['line']}" if same_file else f"{first['file']}:{first['line']}"
    elif not same_file:
        place = f"{first['file']}" + (f" {place}" if place else "")
    return f"{place}: {first['reason']}" if place else first["reason"]


def _blank(path: Path) -> bool:
    """The file holds nothing but whitespace (read in chunks: it may be big)."""
    with open(path, "rb") as handle:
        return all(not chunk.strip() for chunk in iter(lambda: handle.read(1 << 20), b""))


# ---------------------------------------------------------------- data metrics

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
