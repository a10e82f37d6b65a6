"""A source that yields no records fails in its own generate stage, in one line, with its rejects
written first (issue 14, item 4); before, generate exited 0 with an empty raw file and `prepare`
failed two stages later with "file is empty"."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthtune.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def generate(tmp_path, source: dict):
    """Run stage generate in-process on source `mine`: (error line or None, rejects rows or None)."""
    from stages.generate import main

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # the files live in tmp_path, outside the repository the stage runs in: the user opted in
    params["sources"] = {"mine": source if source["kind"] in ("dialogues", "docqa") else {**source, "allow_outside_repo": True}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    argv = ["mine", source["path"], tmp_path / "raw" / "mine.jsonl", tmp_path / "rejected" / "mine.jsonl",
            tmp_path / "m.json", "--params", tmp_path / "params.yaml", "--teacher-cache", tmp_path / "cache"]
    with pytest.raises(UserError) as exc:
        main([str(a) for a in argv])
    rejects = tmp_path / "rejected" / "mine.jsonl"
    return f"error: {exc.value}", [json.loads(line) for line in rejects.read_text().splitlines()] \
        if rejects.exists() else None


def write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_all_rows_bad_fails_with_the_first_reason_and_writes_the_rejects(tmp_path):
    data = write(tmp_path, "mine.jsonl", '{"messages": [oops\n[1, 2]\n{"messages": [{"role": "robot", "content": "x"}]}\n')
    error, rejects = generate(tmp_path, {"kind": "chat", "path": str(data)})
    assert error == (f"error: sources.mine: all 3 rows of {data} were rejected (reasons in "
                     f"{tmp_path / 'rejected' / 'mine.jsonl'}; first: line 1: invalid JSON: Expecting value (column 15))")
    assert [r["line"] for r in rejects] == [1, 2, 3]                      # the user can read every reason
    assert not (tmp_path / "raw" / "mine.jsonl").exists()                 # no empty raw file for prepare


def test_a_mapping_naming_a_missing_field_rejects_every_row_in_one_line(tmp_path):
    rows = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(12)]
    data = write(tmp_path, "mine.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    error, rejects = generate(tmp_path, {"kind": "alpaca", "path": str(data), "mapping": {"instruction": "prompt"}})
    assert error == (f"error: sources.mine: all 12 rows of {data} were rejected (reasons in "
                     f"{tmp_path / 'rejected' / 'mine.jsonl'}; first: line 1: missing instruction field 'prompt')")
    assert len(rejects) == 12


def test_a_json_array_reject_names_its_item_once(tmp_path):
    data = write(tmp_path, "mine.json", json.dumps([{"text": "no messages"}]))
    error, rejects = generate(tmp_path, {"kind": "chat", "path": str(data)})
    assert error.startswith(f"error: sources.mine: the only row of {data} was rejected (reasons in ")
    assert error.endswith(f"; first: {rejects[0]['reason']})") and rejects[0]["reason"].startswith("item 1: ")


@pytest.mark.parametrize("text", ["  \n\n\t\n", "\n"], ids=["spaces-and-tabs", "one-newline"])
def test_a_whitespace_only_file_is_one_line(tmp_path, text):
    data = write(tmp_path, "mine.jsonl", text)
    error, rejects = generate(tmp_path, {"kind": "chat", "path": str(data)})
    assert error == f"error: {data}: file is empty (only whitespace)"
    assert rejects == []


@pytest.mark.parametrize("kind, name, text", [("chat", "mine.json", "[]"), ("csv", "mine.csv", "prompt,response\n")],
                         ids=["empty-json-array", "csv-header-only"])
def test_a_file_without_rows_is_one_line(tmp_path, kind, name, text):
    data = write(tmp_path, name, text)
    error, _ = generate(tmp_path, {"kind": kind, "path": str(data)})
    assert error == f"error: sources.mine: {data} has no rows"


def test_every_conversation_skipped_by_the_options_is_one_line(tmp_path):
    tree = {"message_tree_id": "t1", "prompt": {"role": "prompter", "text": "hola", "lang": "es", "replies": [
        {"role": "assistant", "text": "buenas", "lang": "es"}]}}
    data = write(tmp_path, "mine.jsonl", json.dumps(tree) + "\n" + '{"broken": \n')
    error, rejects = generate(tmp_path, {"kind": "oasst", "path": str(data)})
    assert error == (f"error: sources.mine: no records kept from {data}: 1 skipped by its options (lang: 1), "
                     f"1 row rejected (reasons in {tmp_path / 'rejected' / 'mine.jsonl'}; first: line 2: "
                     f"{rejects[0]['reason']})")


def test_dialogues_that_all_fail_still_write_their_rejects(tmp_path, monkeypatch):
    import stages.generate as stage
    from synthtune.generate.sources import NoRecords

    quarantined = [{"file": "x", "line": 1, "reason": "teacher broke the slots"}]

    def no_dialogues(*args, **kwargs):
        raise NoRecords("sources.mine: generated no dialogues (1 quarantined: teacher broke the slots)", quarantined)

    monkeypatch.setattr(stage, "generate_source", no_dialogues)
    error, rejects = generate(tmp_path, {"kind": "dialogues", "path": str(ROOT / "data/seeds/recipes.json"),
                                         "domain": "recipe", "n_dialogues": 3})
    assert error == "error: sources.mine: generated no dialogues (1 quarantined: teacher broke the slots)"
    assert rejects == quarantined


def test_the_cli_exits_2_with_one_line(tmp_path):
    data = write(tmp_path, "mine.jsonl", "5\n")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sources"] = {"mine": {"kind": "chat", "path": str(data), "allow_outside_repo": True}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "stages.generate", "mine", str(data), str(tmp_path / "raw.jsonl"),
                             str(tmp_path / "rej.jsonl"), str(tmp_path / "m.json"), "--params",
                             str(tmp_path / "params.yaml")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: sources.mine: the only row of {data} was rejected (reasons in {tmp_path / 'rej.jsonl'}; "
        "first: line 1: expected a JSON object, got int)"]
    assert (tmp_path / "rej.jsonl").exists() and not (tmp_path / "raw.jsonl").exists()
