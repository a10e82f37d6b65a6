"""The extension points of generate: LOADERS (kind -> loader, one file each) and SOURCES (kind -> records).

A throwaway loader registered in a test is a loader kind, a params kind and a source kind at once,
without touching config or sources.
"""
from __future__ import annotations

import pkgutil
from pathlib import Path

import pytest
import yaml

import synthtune.generate.loaders as loaders_pkg
from synthtune.core.config import LoaderSourceParams, SourceParams, load_params
from synthtune.core.errors import InputError, ParamsError
from synthtune.core.records import record_id
from synthtune.generate.loaders import LOADERS, RowError, load_source, register_loader
from synthtune.generate.sources import SOURCES, generate_source, loader_source

BUILT_IN = {"alpaca", "qa_json", "chat", "text", "oasst", "csv", "hf"}


def test_one_module_per_format():
    modules = {m.name for m in pkgutil.iter_modules(loaders_pkg.__path__)} - {"base"}
    assert modules == BUILT_IN == set(LOADERS) - {k for k in LOADERS if k.startswith("throwaway")}
    for kind in BUILT_IN:
        assert LOADERS[kind].load.__module__ == f"synthtune.generate.loaders.{kind}"
        assert LOADERS[kind].kind == kind
    assert LOADERS["hf"].needs_file is False and LOADERS["oasst"].options == {"lang": "en", "min_messages": 4}


def test_a_kind_is_registered_once():
    with pytest.raises(ValueError, match="'csv' is already registered"):
        register_loader("csv")(lambda path, rows, mapping, options, explicit: None)


@pytest.fixture
def throwaway():
    """A `throwaway_lines` loader: one text record per non-empty line; a line starting with '!' is bad."""
    def load_lines(path: Path, rows, mapping, options, explicit) -> None:
        for line, raw in enumerate(path.read_text().splitlines(), 1):
            if not raw.strip():
                continue
            try:
                if raw.startswith("!"):
                    raise RowError(f"line starts with {raw[0]!r}")
                text = raw.upper() if options["upper"] else raw
            except RowError as exc:
                rows.reject(line, str(exc))
                continue
            rows.add(line, text=text, meta={"loader": "lines"})

    register_loader("throwaway_lines", mapping={"group": None}, options={"upper": False})(load_lines)
    yield "throwaway_lines"
    del LOADERS["throwaway_lines"]


def lines_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("first note\n\n!bad\nthird note\n")
    return path


def test_throwaway_loader_loads_a_file(tmp_path, throwaway):
    path = lines_file(tmp_path)
    out = load_source(throwaway, path, source="notes", domain="misc", options={"upper": True})
    assert [r["text"] for r in out.records] == ["FIRST NOTE", "THIRD NOTE"]
    first = out.records[0]
    assert first["id"] == record_id(first) and first["group"] == f"notes:{first['id']}"
    assert first["meta"] == {"file": str(path), "line": 1, "loader": "lines"}
    # a loader that gives no code gets the generic one
    assert out.rejects == [{"file": str(path), "line": 3, "code": "invalid_row", "reason": "line starts with '!'"}]
    with pytest.raises(InputError, match="loader 'throwaway_lines': unknown options key"):
        load_source(throwaway, path, source="notes", options={"lower": True})


def _params_with(tmp_path, root, entry: dict) -> Path:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sources"] = {"notes": entry}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_throwaway_loader_through_params_and_sources(tmp_path, root, throwaway):
    data = lines_file(tmp_path)
    params = load_params(_params_with(tmp_path, root, {"kind": throwaway, "path": str(data), "domain": "misc", "allow_outside_repo": True}))
    source = params.sources["notes"]
    assert type(source) is LoaderSourceParams and source.kind == throwaway
    assert throwaway in SOURCES and SOURCES[throwaway] is loader_source
    out = generate_source("notes", source, data, params.seed)
    assert [r["text"] for r in out.records] == ["first note", "third note"]
    assert out.metrics == {"records": 2, "rejected": 1, "skipped": 0}
    assert out.rejects[0]["line"] == 3

    with pytest.raises(ParamsError, match=r"sources\.notes\.n_dialogues: unknown key for a 'throwaway_lines' source"):
        load_params(_params_with(tmp_path, root, {"kind": throwaway, "path": str(data), "n_dialogues": 3}))


def test_an_unregistered_loader_kind_is_no_source(tmp_path, root, throwaway):
    del LOADERS[throwaway]
    try:
        assert throwaway not in SOURCES
        with pytest.raises(ParamsError, match=r"sources\.notes\.kind: unknown source kind"):
            load_params(_params_with(tmp_path, root, {"kind": throwaway, "path": "x"}))
        source = SourceParams.model_construct(kind=throwaway, path="x", domain="general")
        with pytest.raises(InputError, match=r"^sources\.notes\.kind: unknown source kind 'throwaway_lines'"):
            generate_source("notes", source, tmp_path / "x", 0)
    finally:
        register_loader(throwaway)(lambda *a: None)     # the fixture removes it again


def test_sources_hold_generators_and_every_loader_kind():
    assert {"dialogues", "docqa", "api_code"} | set(LOADERS) == set(SOURCES)
    assert len(SOURCES) == len(set(SOURCES))
    assert SOURCES["csv"] is loader_source and SOURCES["dialogues"] is not loader_source
    assert "xml" not in SOURCES


def test_dialogue_source_errors_keep_their_text(tmp_path, root):
    source = SourceParams(kind="dialogues", path="c.json", domain="zoo", n_dialogues=2)
    with pytest.raises(InputError) as err:
        generate_source("tod", source, root / "data" / "seeds" / "recipes.json", 0)
    assert str(err.value) == "sources.tod.domain: 'zoo' has no dialogue simulator (known: ecommerce, recipe)"


def test_voiced_dialogues_all_quarantined_is_one_error(root, monkeypatch):
    import synthtune.generate.dialogue as dialogue

    class LLM:
        backend = "openai"

    def quarantine_all(records, domain, teacher, request_cls, reasks=2, **checks):
        return [], [{"file": "x", "line": 1, "reason": "teacher broke the slots"}] * len(records)

    monkeypatch.setattr(dialogue, "voice_dialogues", quarantine_all)
    source = SourceParams(kind="dialogues", path="r.json", domain="recipe", n_dialogues=3)
    with pytest.raises(InputError) as err:
        generate_source("tod", source, root / "data" / "seeds" / "recipes.json", 0, teacher=LLM())
    assert str(err.value) == "sources.tod: generated no dialogues (3 quarantined: teacher broke the slots)"


def test_prompt_hash_names_the_prompts_a_generator_used(monkeypatch):
    """The dataset card tells runs apart by this hash: it must change when a prompt's text changes."""
    import inspect

    import synthtune.generate.docqa as docqa
    from synthtune.generate.sources import prompts_sha256

    before = prompts_sha256("docqa")
    assert len(before) == 12 and prompts_sha256("dialogues") not in (None, before) and prompts_sha256("csv") is None
    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda m: real(m) + "# reworded" if m is docqa else real(m))
    assert prompts_sha256("docqa") != before
