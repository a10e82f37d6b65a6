"""prepare reads exactly the files of the sources in params (issue 14, item 1): a raw or rejects
file left behind by a removed source changes nothing, and a source whose raw file is missing is
one error line."""
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import yaml

from synthtune.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def record(source: str, i: int) -> dict:
    return {"source": source, "group": f"{source}:g{i}", "messages": [
        {"role": "user", "content": f"{source} question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}


def workspace(tmp_path: Path, sources=("alpha", "beta")) -> Path:
    """data/raw and data/rejected of `sources`, and params.yaml naming exactly them."""
    for name in sources:
        (tmp_path / "raw").mkdir(parents=True, exist_ok=True)
        (tmp_path / "rejected").mkdir(parents=True, exist_ok=True)
        rows = [record(name, i) for i in range(40)]
        (tmp_path / "raw" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "[1]\n")
        (tmp_path / "rejected" / f"{name}.jsonl").write_text(
            json.dumps({"file": f"{name}.jsonl", "line": 7, "reason": "invalid JSON"}) + "\n")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sources"] = {name: {"kind": "chat", "path": f"data/{name}.jsonl"} for name in sources}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return tmp_path


def prepare(ws: Path) -> dict[str, bytes]:
    """Run stage prepare in-process inside `ws` with relative paths, as `dvc repro` does in a
    checkout; every file it wrote, by path relative to its output folder."""
    from stages.prepare import main

    cwd = os.getcwd()
    os.chdir(ws)
    try:
        main(["raw", "rejected", "out/prepared", "out/metrics.json", "out/plots", "--params", "params.yaml"])
    finally:
        os.chdir(cwd)
    target = ws / "out"
    return {str(p.relative_to(target)): p.read_bytes() for p in sorted(target.rglob("*")) if p.is_file()}


def orphan(ws: Path, name: str = "gone_source") -> None:
    """The raw and rejects files a source removed from params leaves in the workspace."""
    rows = [record(name, i) for i in range(25)] + [record("alpha", 0)]     # one duplicates a kept record
    (ws / "raw" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    (ws / "rejected" / f"{name}.jsonl").write_text(json.dumps({"file": "x", "line": 1, "reason": "bad"}) + "\n")


def test_an_orphan_raw_file_leaves_every_output_byte_identical(tmp_path, caplog):
    clean = prepare(workspace(tmp_path / "clone"))
    ws = workspace(tmp_path / "dirty")
    orphan(ws)
    with caplog.at_level(logging.WARNING, logger="stages.prepare"):
        dirty = prepare(ws)
    assert set(dirty) == set(clean) and {"prepared/train.jsonl", "metrics.json", "plots/intents.csv"} <= set(clean)
    for name in clean:
        assert dirty[name] == clean[name], name
    assert b"gone_source" not in b"".join(dirty.values())
    warned = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("ignoring raw/gone_source.jsonl: ") for m in warned)
    assert any(m.startswith("ignoring rejected/gone_source.jsonl: ") for m in warned)


def test_cutting_sources_down_to_one_reads_only_that_one(tmp_path):
    ws = workspace(tmp_path / "ws")
    params = yaml.safe_load((ws / "params.yaml").read_text())
    del params["sources"]["beta"]
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cut = prepare(ws)
    only = prepare(workspace(tmp_path / "only", sources=("alpha",)))
    assert cut == only
    assert json.loads(cut["metrics.json"])["records_read"] == 41


def test_a_source_whose_raw_file_is_missing_is_one_line(tmp_path):
    ws = workspace(tmp_path)
    (ws / "raw" / "beta.jsonl").unlink()
    with pytest.raises(UserError) as exc:
        prepare(ws)
    assert str(exc.value) == ("raw/beta.jsonl: file not found (sources.beta has not been generated: "
                              "run `dvc repro generate@beta`)")


def test_a_source_whose_rejects_file_is_missing_is_one_line(tmp_path):
    ws = workspace(tmp_path)
    (ws / "rejected" / "alpha.jsonl").unlink()
    with pytest.raises(UserError) as exc:
        prepare(ws)
    assert str(exc.value) == ("rejected/alpha.jsonl: file not found (sources.alpha has not been "
                              "generated: run `dvc repro generate@alpha`)")


def test_several_missing_sources_are_named_in_one_line(tmp_path):
    ws = workspace(tmp_path)
    shutil.rmtree(ws / "raw")
    with pytest.raises(UserError) as exc:
        prepare(ws)
    assert str(exc.value) == "raw: no raw JSONL files for sources alpha, beta (run `dvc repro`)"
