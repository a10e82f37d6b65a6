"""The bad-input suite: what a user can get wrong, across stages, and what they see.

Each case runs a stage's `main` in-process the way `synthtune.core.cli.run_stage` does, and asserts the
exact one-line message (`error: ...`, exit code 2 from the CLI) or, for a bad row, the exact
quarantine reason, and that every good record survives. tests/test_cli_errors.py runs a few of
them as real subprocesses (exit code, no traceback).
"""
import json
import shutil
import socket
from pathlib import Path

import pytest
import yaml

from synthtune.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
GOOD = [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": f"hello {i}"}]}
        for i in range(3)]
BIG = 10 * 1024 * 1024


def error_of(main, argv) -> str:
    """The line run_stage would print, or a failure if the stage did not refuse."""
    with pytest.raises(UserError) as exc:
        main([str(a) for a in argv])
    return f"error: {exc.value}"


def write_params(tmp_path, sources=None, **sections) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    if sources is not None:
        params["sources"] = sources
    for name, values in sections.items():
        params[name].update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def generate(tmp_path, source: dict, **sections):
    from stages.generate import main

    if source["kind"] not in ("dialogues", "docqa"):     # the files are in tmp_path, outside the repository
        source = {**source, "allow_outside_repo": True}
    params = write_params(tmp_path, {"s": source}, **sections)
    argv = ["s", source["path"], tmp_path / "raw.jsonl", tmp_path / "rejected.jsonl", tmp_path / "m.json",
            "--params", params, "--teacher-cache", tmp_path / "cache"]
    return main, argv


def chat_file(tmp_path, bad: bytes) -> Path:
    lines = [json.dumps(g).encode() for g in GOOD]
    lines.insert(1, bad)
    path = tmp_path / "chat.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


# ------------------------------------------------------------------ bad rows: quarantined, never fatal

@pytest.mark.parametrize("bad, reason", [
    (b'{"messages": [oops', "invalid JSON: Expecting value (column 15)"),
    (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), "messages[0].content must be a string, got int"),
    (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(),
     "messages[0]: unknown role 'wizard' (allowed: system/user/assistant)"),
    (b'{"messages": "\xff\xfe"}', "invalid UTF-8 at byte 14"),
    (b'{"messages": [{"role": "user", "content": "' + b"x" * BIG, "invalid JSON: Invalid control character at (column 10485804)"),
], ids=["malformed-json", "wrong-type", "unknown-role", "invalid-utf8", "10MB-unterminated-line"])
def test_bad_row_is_quarantined_with_its_reason_and_good_rows_survive(tmp_path, bad, reason):
    path = chat_file(tmp_path, bad)
    main, argv = generate(tmp_path, {"kind": "chat", "path": str(path)})
    main([str(a) for a in argv])
    kept = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()]
    rejects = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert [r["messages"][0]["content"] for r in kept] == ["hi 0", "hi 1", "hi 2"]
    assert len(rejects) == 1 and rejects[0]["file"] == str(path) and rejects[0]["line"] == 2
    assert rejects[0]["reason"].startswith(reason)


def test_a_valid_10mb_row_is_a_row(tmp_path):
    big = json.dumps({"messages": [{"role": "user", "content": "x" * BIG}, {"role": "assistant", "content": "y"}]})
    main, argv = generate(tmp_path, {"kind": "chat", "path": str(chat_file(tmp_path, big.encode()))})
    main([str(a) for a in argv])
    assert len((tmp_path / "raw.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "rejected.jsonl").read_text() == ""


# ------------------------------------------------------------------ files and params: one line each

def test_empty_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    main, argv = generate(tmp_path, {"kind": "chat", "path": str(tmp_path / "empty.jsonl")})
    assert error_of(main, argv) == f"error: {tmp_path / 'empty.jsonl'}: file is empty"


def test_missing_file(tmp_path):
    main, argv = generate(tmp_path, {"kind": "chat", "path": str(tmp_path / "nope.jsonl")})
    assert error_of(main, argv) == f"error: {tmp_path / 'nope.jsonl'}: file not found"


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_unknown_params_key(tmp_path):
    from stages.prepare import main

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("  val_fraction:", "  val_fractoin:"))
    msg = error_of(main, [tmp_path / "raw", tmp_path / "rej", tmp_path / "out", tmp_path / "m.json",
                          tmp_path / "plots", "--params", params])
    assert msg == f"error: {params}:{_line_of(params, 'val_fractoin')}: prepare.val_fractoin: unknown key"


def test_mistyped_params_value(tmp_path):
    from stages.prepare import main

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("  test_fraction: 0.1", "  test_fraction: 1e-1"))
    msg = error_of(main, [tmp_path / "raw", tmp_path / "rej", tmp_path / "out", tmp_path / "m.json",
                          tmp_path / "plots", "--params", params])
    assert msg == (f"error: {params}:{_line_of(params, 'test_fraction')}: prepare.test_fraction: "
                   "Input should be a valid number (got '1e-1')")


# ------------------------------------------------------------------ dialogue seeds

def seeds_copy(tmp_path) -> Path:
    seeds = tmp_path / "seeds"
    shutil.copytree(ROOT / "data" / "seeds" / "graphs", seeds / "graphs")
    shutil.copy(ROOT / "data" / "seeds" / "products.json", seeds / "products.json")
    return seeds


def test_graph_with_an_unreachable_state(tmp_path):
    seeds = seeds_copy(tmp_path)
    graph_path = seeds / "graphs" / "ecommerce.json"
    graph = json.loads(graph_path.read_text())
    for edges in [graph["start"], graph["common"], *graph["edges"].values()]:
        edges.pop("show_cart", None)
    graph_path.write_text(json.dumps(graph))
    main, argv = generate(tmp_path, {"kind": "dialogues", "path": str(seeds / "products.json"),
                                     "domain": "ecommerce", "n_dialogues": 5})
    assert error_of(main, argv) == f"error: {graph_path}: state 'show_cart' is unreachable from start"


def test_catalog_row_missing_a_field(tmp_path):
    seeds = seeds_copy(tmp_path)
    rows = json.loads((seeds / "products.json").read_text())
    del rows[7]["category"]
    (seeds / "products.json").write_text(json.dumps(rows))
    main, argv = generate(tmp_path, {"kind": "dialogues", "path": str(seeds / "products.json"),
                                     "domain": "ecommerce", "n_dialogues": 5})
    assert error_of(main, argv) == f"error: {seeds / 'products.json'}: product #7 (id 'p008') lacks category"


def test_intent_check_with_an_embedder_that_cannot_compare_calls(tmp_path):
    main, argv = generate(tmp_path, {"kind": "dialogues", "path": str(ROOT / "data/seeds/products.json"),
                                     "domain": "ecommerce", "n_dialogues": 5, "intent_check": "tfidf"})
    message = error_of(main, argv)
    assert "sources.s.intent_check" in message and "sentence-transformers:<model> embedder or null" in message
    assert "\n" not in message


# ------------------------------------------------------------------ the teacher: one line, work kept

def docqa(tmp_path, **teacher):
    base = {"backend": "openai", "model": "gpt-4o-mini", "api_key_env": None, "max_retries": 1, "backoff_s": 0.01,
            "timeout_s": 5.0}
    base.update(teacher)
    return generate(tmp_path, {"kind": "docqa", "path": str(ROOT / "data" / "seeds" / "qa_docs"), "domain": "manuals"},
                    teacher=base)


def test_teacher_unreachable(tmp_path):
    with socket.socket() as sock:           # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    main, argv = docqa(tmp_path, base_url=f"http://127.0.0.1:{port}/v1")
    msg = error_of(main, argv)
    assert msg.startswith(f"error: teacher.base_url: cannot reach http://127.0.0.1:{port}/v1")


def test_teacher_wrong_key(tmp_path, monkeypatch):
    from tests.llm.teacher_server import TeacherServer

    monkeypatch.setenv("BAD_INPUT_KEY", "sk-wrong")
    with TeacherServer(api_key="sk-right") as server:
        main, argv = docqa(tmp_path, base_url=server.base_url, api_key_env="BAD_INPUT_KEY")
        msg = error_of(main, argv)
        url = server.base_url
    assert msg == f"error: teacher.api_key_env: {url} refused the key in $BAD_INPUT_KEY (HTTP 401)"
    assert "sk-wrong" not in msg


def test_teacher_unknown_model(tmp_path):
    from tests.llm.teacher_server import TeacherServer

    with TeacherServer(models={"gpt-4o"}) as server:
        main, argv = docqa(tmp_path, base_url=server.base_url)
        msg = error_of(main, argv)
        url = server.base_url
    assert msg == f"error: teacher.model: {url} does not serve model 'gpt-4o-mini' (HTTP 404)"


def test_teacher_budget_exhausted_keeps_what_was_done(tmp_path):
    import sqlite3

    from tests.llm.teacher_server import TeacherServer

    with TeacherServer() as server:
        main, argv = docqa(tmp_path, base_url=server.base_url, max_cost_usd=0.0005, concurrency=1, max_tokens=64)
        msg = error_of(main, argv)
        answered = server.answered
    assert msg.startswith("error: teacher.max_cost_usd: stopped before crossing $0.0005")
    assert answered > 0
    with sqlite3.connect(tmp_path / "cache" / "s" / "responses.sqlite" if (tmp_path / "cache" / "s").exists()
                         else tmp_path / "cache" / "responses.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == answered


# ------------------------------------------------------------------ predict and score

def test_prediction_ids_that_do_not_match_the_references(tmp_path):
    from synthtune.evaluate.scorecard import references, score_turns

    refs = references([{"id": "d1", "source": "s", "group": "g", "messages": [],
                        "gold": [{"index": 1, "intent": "greeting", "slots": {}, "reply": "hi"}]}])
    with pytest.raises(UserError) as exc:
        score_turns(refs, [{"id": "d2:1", "output": "x"}], {"greeting"}, "data/predictions/tuned.jsonl")
    assert str(exc.value).startswith("data/predictions/tuned.jsonl: prediction ids do not match the references")


def test_empty_test_split(tmp_path):
    from synthtune.evaluate.predict import require_turns

    with pytest.raises(UserError) as exc:
        require_turns([], tmp_path / "test.jsonl")
    assert str(exc.value) == f"{tmp_path / 'test.jsonl'}: the test split is empty (no assistant turns to predict and score)"


def test_api_docs_that_are_not_json(tmp_path):
    from synthtune.evaluate.metrics.api_match import load_api_docs

    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "broken.json").write_text('{"functions": [')
    with pytest.raises(UserError) as exc:
        load_api_docs(tmp_path / "api")
    assert str(exc.value).startswith(f"{tmp_path / 'api' / 'broken.json'}: API document is not valid JSON")


# ------------------------------------------------------------------ params.yaml: one line, with its line

def prepare_error(tmp_path, params: Path) -> str:
    from stages.prepare import main

    return error_of(main, [tmp_path / "raw", tmp_path / "rej", tmp_path / "out", tmp_path / "m.json",
                           tmp_path / "plots", "--params", params])


def edited_params(tmp_path, old: str, new: str) -> Path:
    params = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text()
    assert old in text
    params.write_text(text.replace(old, new, 1))
    return params


def test_duplicate_params_key(tmp_path):
    params = edited_params(tmp_path, "  test_fraction: 0.1\n", "  test_fraction: 0.1\n  test_fraction: 0.2\n")
    first = _line_of(params, "test_fraction")
    assert prepare_error(tmp_path, params) == (f"error: {params}:{first + 1}: duplicate key 'test_fraction' in prepare "
                                               f"(first at line {first})")


def test_split_fractions_that_leave_no_train_split(tmp_path):
    params = edited_params(tmp_path, "  val_fraction: 0.1 ", "  val_fraction: 0.9 ")
    line = _line_of(params, "val_fraction")
    assert prepare_error(tmp_path, params) == (
        f"error: {params}:{line}: prepare.val_fraction + prepare.test_fraction (line {line + 1}): must sum to less "
        "than 1, or nothing is left to train on (got 0.9 + 0.1)")


def test_source_name_that_is_not_a_plain_word(tmp_path):
    params = edited_params(tmp_path, "  recipe_tod:", "  recipe tod:")
    assert prepare_error(tmp_path, params) == (
        f"error: {params}:{_line_of(params, 'recipe tod:')}: sources.recipe tod: a source name may hold only letters, "
        "digits, '_', '.' and '-', and may not start with '.' or '-' (it names the stage generate@<name> and its files) "
        "(got 'recipe tod')")


def test_loader_source_without_a_path(tmp_path):
    params = write_params(tmp_path, {"mine": {"kind": "csv"}})
    assert prepare_error(tmp_path, params).endswith(": sources.mine.path: required key is missing")


def test_unknown_source_kind(tmp_path):
    params = write_params(tmp_path, {"mine": {"kind": "parquetz", "path": "x"}})
    assert "sources.mine.kind: unknown source kind (known: " in prepare_error(tmp_path, params)


# ------------------------------------------------------------------ a user's files

def test_csv_delimiter_longer_than_one_character(tmp_path):
    (tmp_path / "rows.csv").write_text("prompt,response\nhi,hello\n")
    main, argv = generate(tmp_path, {"kind": "csv", "path": str(tmp_path / "rows.csv"), "options": {"delimiter": "||"}})
    assert error_of(main, argv) == "error: loader 'csv': option delimiter must be one character, got '||'"


def test_source_path_outside_the_repository(tmp_path):
    from stages.generate import main

    params = write_params(tmp_path, {"s": {"kind": "text", "path": "/etc/passwd"}})
    msg = error_of(main, ["s", "/etc/passwd", tmp_path / "raw.jsonl", tmp_path / "rejected.jsonl",
                          tmp_path / "m.json", "--params", params, "--teacher-cache", tmp_path / "cache"])
    assert msg == (f"error: sources.s.path: '/etc/passwd' is outside the repository ({Path.cwd()}); "
                   "set sources.s.allow_outside_repo: true to read it")


def test_every_row_rejected(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [oops\n[1, 2]\n')
    main, argv = generate(tmp_path, {"kind": "chat", "path": str(path)})
    assert error_of(main, argv) == (f"error: sources.s: all 2 rows of {path} were rejected (reasons in "
                                    f"{tmp_path / 'rejected.jsonl'}; first: line 1: invalid JSON: Expecting value (column 15))")
    assert len((tmp_path / "rejected.jsonl").read_text().splitlines()) == 2     # written before the error


def test_whitespace_only_file(tmp_path):
    (tmp_path / "blank.jsonl").write_text("  \n\t\n")
    main, argv = generate(tmp_path, {"kind": "chat", "path": str(tmp_path / "blank.jsonl")})
    assert error_of(main, argv) == f"error: {tmp_path / 'blank.jsonl'}: file is empty (only whitespace)"


def test_csv_with_a_header_and_no_rows(tmp_path):
    (tmp_path / "rows.csv").write_text("prompt,response\n")
    main, argv = generate(tmp_path, {"kind": "csv", "path": str(tmp_path / "rows.csv")})
    assert error_of(main, argv) == f"error: sources.s: {tmp_path / 'rows.csv'} has no rows"


def test_a_byte_order_mark_keeps_the_first_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(json.dumps(g).encode() for g in GOOD) + b"\n")
    main, argv = generate(tmp_path, {"kind": "chat", "path": str(path)})
    main([str(a) for a in argv])
    assert len((tmp_path / "raw.jsonl").read_text().splitlines()) == 3


def test_prepare_with_a_source_that_was_never_generated(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "rej").mkdir()
    for name in ("qa_docs", "recipe_tod", "lua_api"):      # every default source but shop_tod
        (tmp_path / "raw" / f"{name}.jsonl").write_text("")
        (tmp_path / "rej" / f"{name}.jsonl").write_text("")
    assert prepare_error(tmp_path, ROOT / "params.yaml") == (
        f"error: {tmp_path / 'raw' / 'shop_tod.jsonl'}: file not found (sources.shop_tod has not been generated: "
        "run `dvc repro generate@shop_tod`)")


# ------------------------------------------------------------------ the API-match inputs

def test_api_document_of_an_unknown_shape(tmp_path):
    from synthtune.evaluate.metrics.api_match import load_api_docs

    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "doc.json").write_text('{"endpoints": []}')
    with pytest.raises(UserError) as exc:
        load_api_docs(tmp_path / "api")
    assert str(exc.value).startswith(f"{tmp_path / 'api' / 'doc.json'}: unknown API document shape (keys ['endpoints'])")


def test_api_prompts_csv_without_a_prompt_column(tmp_path):
    from synthtune.evaluate.metrics.api_match import load_api_prompts

    (tmp_path / "p.csv").write_text("question\nhow?\n")
    with pytest.raises(UserError) as exc:
        load_api_prompts(tmp_path / "p.csv")
    assert str(exc.value).startswith(f"{tmp_path / 'p.csv'}: CSV has no \"prompt\" column (header: ['question'])")


# ------------------------------------------------------------------ the wrong interpreter

def test_a_stage_started_by_a_python_without_the_project_stops_at_once():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-S", "-m", "stages.select", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
    assert out.stderr.startswith(f"error: this Python ({sys.executable}) lacks ")
    assert "source .venv/bin/activate" in out.stderr
