"""API match: extraction rules, the metric on hand-made cases, the shipped API documents and prompts."""
import json
import re
import sys

import pytest

from synthtune.evaluate.metrics.api_match import (api_match, code_of, extract_calls, load_api_docs, load_api_prompts,
                                                  score_api_predictions, strip_lua)
from synthtune.core.errors import InputError

DOC = {"library": "t", "functions": [
    {"name": "ui.newButton", "signature": "ui.newButton(label) -> Button"},
    {"name": "ui.draw", "signature": "ui.draw()"},
    {"name": "gfx.print", "signature": "gfx.print(text, x, y)"},
    {"name": "Button:setLabel", "signature": "Button:setLabel(text)"},
    {"name": "wait", "signature": "wait(seconds)"},
    {"name": "game.update", "kind": "callback", "signature": "function game.update(dt)"},
]}


@pytest.fixture
def api(tmp_path):
    (tmp_path / "t.json").write_text(json.dumps(DOC))
    return load_api_docs(tmp_path)


def test_extracts_dotted_global_and_method_calls(api):
    code = "local b = ui.newButton('ok')\nb:setLabel('x')\nwait(2)\nui.widgets.make(1)\nb:explode()"
    assert extract_calls(code, api) == {"ui.newButton", ":setLabel", "wait", "ui.widgets.make", ":explode"}


def test_method_after_a_call_and_repeated_calls_count_once(api):
    assert extract_calls('ui.newButton("a"):setLabel("b")\nui.draw() ui.draw()', api) == {
        "ui.newButton", ":setLabel", "ui.draw"}


def test_strings_and_comments_are_not_code(api):
    code = ('gfx.print("call ui.fake(1) here", 1, 2) -- ui.other()\n--[[ ui.block() ]]\n'
            "local s = [[ ui.long() ]]\nlocal t = 'it''s ui.q()'")
    assert extract_calls(code, api) == {"gfx.print"}
    assert "fake" not in strip_lua(code)


def test_builtins_self_and_local_definitions_are_left_out(api):
    code = """local function helper(x) return x end
function M.build() end
local make = function() end
function Thing:spin() end
helper(1) M.build() make() obj:spin()
print(string.format("%d", 1)) table.insert(t, 1) pairs(t) name:upper() self.cb() if (x) then end"""
    assert extract_calls(code, api) == set()


def test_callbacks_count_when_defined(api):
    code = "function game.update(dt)\n  ui.draw()\nend\nfunction game.tick() end"
    assert extract_calls(code, api) == {"game.update", "ui.draw"}


def test_markdown_reads_code_blocks_and_inline_code_only(api):
    text = ("Create it with `ui.newButton(label)` (see the docs (section 2)).\n\n"
            "```lua\nlocal b = ui.newButton('x')\nb:setLabel('y')\n```\nThen call draw(twice).")
    assert extract_calls(text, api) == {"ui.newButton", ":setLabel"}
    assert code_of("no code here, only wait(3)") == "no code here, only wait(3)"
    assert extract_calls("Use the window (main) and wait(3)", api) == {"wait"}


def test_metric_on_hand_made_answers(api):
    ref1 = "ui.draw()\ngfx.print('a', 1, 2)"            # reference units: ui.draw, gfx.print
    ref2 = "local b = ui.newButton('x') b:setLabel('y')"  # ui.newButton, :setLabel
    out1 = "ui.draw() ui.render() gfx.print('a', 1, 2)"   # 2 known (both in ref) + 1 invented
    out2 = "wait(1)"                                      # 1 known, not in ref
    scores = api_match([out1, out2], [ref1, ref2], api)
    assert scores["api_match_precision"] == pytest.approx(3 / 4)
    assert scores["api_match_recall"] == pytest.approx(2 / 4)
    assert scores["api_match_f1"] == pytest.approx(round(2 * 0.75 * 0.5 / 1.25, 4))
    assert scores["api_invented_rate"] == pytest.approx(1 / 4)
    assert scores["api_answers_with_invented"] == pytest.approx(1 / 2)
    assert scores["api_calls_per_answer"] == 2.0
    assert scores["api_no_call_rate"] == 0.0 and scores["api_prompts_with_reference"] == 2
    nothing = api_match(["I cannot help"], [ref1], api)
    assert "api_match_precision" not in nothing and "api_invented_rate" not in nothing   # undefined, not 0
    assert nothing["api_no_call_rate"] == 1.0 and nothing["api_calls_per_answer"] == 0.0
    assert nothing["api_match_recall"] == 0.0 and nothing["api_match_f1"] == 0.0


def test_no_calls_and_all_invented_are_told_apart(api):
    ref = "ui.draw()"
    invented = api_match(["ui.render() gfx.paint()", "ui.fake()"], [ref, ref], api)
    assert invented["api_match_precision"] == 0.0 and invented["api_invented_rate"] == 1.0
    assert invented["api_no_call_rate"] == 0.0 and invented["api_answers_with_invented"] == 1.0
    silent = api_match(["Sorry.", "I do not know."], [ref, ref], api)
    assert "api_match_precision" not in silent and silent["api_no_call_rate"] == 1.0
    # precision is over the answers that make calls: a silent answer neither helps nor hurts it
    mixed = api_match(["ui.draw() ui.fake()", "No code."], [ref, ref], api)
    assert mixed["api_match_precision"] == 0.5 and mixed["api_no_call_rate"] == 0.5
    assert mixed["api_match_recall"] == 0.5 and mixed["api_match_f1"] == 0.5
    assert mixed["api_calls_per_answer"] == 1.0 and mixed["api_answers_with_invented"] == 0.5


def test_reference_is_optional_and_recall_counts_only_prompts_with_one(api):
    outs = ["ui.draw() wait(1)", "gfx.print('a', 1, 2) ui.fake()", "ui.draw()"]
    scores = api_match(outs, ["ui.draw() gfx.print('x', 1, 2)", None, "  "], api)
    assert scores["api_prompts_with_reference"] == 1 and scores["api_prompts"] == 3
    assert scores["api_match_recall"] == 0.5                     # ui.draw of {ui.draw, gfx.print}
    assert scores["api_match_precision"] == pytest.approx(round(4 / 5, 4))   # all three answers
    assert scores["api_match_f1"] == pytest.approx(round(2 * 0.8 * 0.5 / 1.3, 4))
    unreferenced = api_match(outs, [None, None, None], api)
    assert "api_match_recall" not in unreferenced and "api_match_f1" not in unreferenced
    assert unreferenced["api_prompts_with_reference"] == 0 and unreferenced["api_match_precision"] == 0.8
    prompts = [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "q", "reference": None}]
    card = score_api_predictions(api, prompts, [{"id": "a", "output": "ui.draw()"}, {"id": "b", "output": ""}], "m")
    assert card["api_match_precision"] == 1.0 and card["api_prompts_with_reference"] == 0


def test_documented_builtins_count_as_api(tmp_path):
    (tmp_path / "lua.json").write_text(json.dumps({"functions": [
        {"name": "print"}, {"name": "string.format"}, {"name": "table.insert"}, {"name": "String:upper"}]}))
    api = load_api_docs(tmp_path)
    answer = 'print(string.format("%d", 1)) table.insert(t, 1) s:upper() pairs(t) math.floor(2) s:lower()'
    assert extract_calls(answer, api) == {"print", "string.format", "table.insert", ":upper"}
    scores = api_match([answer], ['print("x") table.insert(t, 2)'], api)
    assert scores["api_match_precision"] == 1.0 and scores["api_match_recall"] == 1.0
    assert extract_calls("if(x) then self.cb() end", api) == set()    # keywords and self: never

SEED_DOC = {"apis": [                               # the luacoder seed's shape: name + signature
    {"name": "ui.newButton", "signature": "ui.newButton(label) -> Button"},
    {"name": "ui.draw", "signature": "ui.draw()"},
    {"name": "Button:setLabel", "signature": "Button:setLabel(text)"},
    {"name": "print", "signature": "print(...)"},
]}


def test_seed_shaped_document_and_csv_prompts_score_hand_made_answers(tmp_path):
    (tmp_path / "seed_api.json").write_text(json.dumps(SEED_DOC))
    api = load_api_docs(tmp_path / "seed_api.json")
    assert api.functions == {"ui.newButton", "ui.draw", "print"} and api.methods == {":setLabel"}
    csv_file = tmp_path / "prompts.csv"
    csv_file.write_text('prompt,reference\n'
                        '"Make a button, draw it","```lua\nlocal b = ui.newButton(""ok"")\nui.draw()\n```"\n'
                        'Say hi,\n'
                        '"Rename it","b:setLabel(""x"") print(""done"")"\n', encoding="utf-8")
    prompts = load_api_prompts(csv_file)
    assert [p["id"] for p in prompts] == ["line2", "line6", "line7"]      # the first line of each row
    assert prompts[1] == {"id": "line6", "prompt": "Say hi", "reference": None}
    assert prompts[0]["reference"].startswith("```lua\nlocal b = ui.newButton(\"ok\")")
    answers = [{"id": "line2", "output": "```lua\nlocal b = ui.newButton('ok')\nb:explode()\n```"},
               {"id": "line6", "output": "print('hi')"},
               {"id": "line7", "output": "Call `b:setLabel(name)`."}]
    scores = score_api_predictions(api, prompts, answers, "api/m.jsonl")
    # extracted: {ui.newButton, :explode}, {print}, {:setLabel} -> 3 known of 4
    assert scores["api_match_precision"] == 0.75 and scores["api_invented_rate"] == 0.25
    # references (2 of 3): {ui.newButton, ui.draw} and {:setLabel, print}; hits ui.newButton, :setLabel
    assert scores["api_prompts_with_reference"] == 2 and scores["api_match_recall"] == 0.5
    assert scores["api_match_f1"] == 0.6 and scores["api_no_call_rate"] == 0.0
    assert scores["api_answers_with_invented"] == pytest.approx(round(1 / 3, 4))


def test_prompt_files_jsonl_without_reference_and_csv_with_ids(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": "a", "prompt": "x"}\n\n{"prompt": "y", "reference": "ui.draw()"}\n{"id": 7, "prompt": "z"}\n')
    assert load_api_prompts(jsonl) == [{"id": "a", "prompt": "x", "reference": None},
                                       {"id": "line3", "prompt": "y", "reference": "ui.draw()"},
                                       {"id": "7", "prompt": "z", "reference": None}]
    with_ids = tmp_path / "p.csv"
    with_ids.write_text("\ufeffid,prompt\nq1,draw\nq2,click\n", encoding="utf-8")
    assert [(p["id"], p["reference"]) for p in load_api_prompts(with_ids)] == [("q1", None), ("q2", None)]


@pytest.mark.parametrize("name, text, message", [
    ("p.csv", "question,answer\nx,y\n", r'p\.csv: CSV has no "prompt" column \(header: \[.question., .answer.\]\)'),
    ("p.csv", "prompt,reference\nx,y,z\n", r"p\.csv:2: expected 2 cells like the header, got 3"),
    ("p.csv", "prompt\n", r"p\.csv: no API prompts"),
    ("p.csv", 'prompt\nok\n"never closed\nmore\n', r"p\.csv:3: malformed CSV: unexpected end of data"),
    ("p.jsonl", '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', r"p\.jsonl:2: duplicate id 'a' \(first on line 1\)"),
    ("p.jsonl", '{"id": "a", "text": "x"}\n', r'p\.jsonl:1: "prompt" must be a non-empty string \(got None\)'),
    ("p.jsonl", '{"prompt": "x", "reference": 3}\n', r'p\.jsonl:1: "reference" must be a string when given'),
    ("p.json", '[{"prompt": "x"}]', r"p\.json: unknown API prompt file type '\.json'; expected \.jsonl .* or \.csv"),
])
def test_bad_prompt_files_are_one_line_naming_the_file(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message) as err:
        load_api_prompts(tmp_path / name)
    assert "\n" not in str(err.value) and str(tmp_path / name) in str(err.value)


@pytest.mark.parametrize("doc, got", [
    ({"api": [{"name": "f"}]}, r"\(keys \['api'\]\)"),
    ([{"name": "f"}], r"\(a JSON list\)"),
    ({"apis": []}, None),
])
def test_unknown_document_shape_names_the_file_and_the_shapes(tmp_path, doc, got):
    (tmp_path / "mine.json").write_text(json.dumps(doc))
    with pytest.raises(InputError) as err:
        load_api_docs(tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'mine.json'}: ") and "\n" not in msg
    assert '{"functions": [{"name": ..., "signature": ...}, ...]} or {"apis": [{"name": ..., "signature": ...}, ...]}' in msg
    assert re.search(got, msg) if got else '"apis" must be a non-empty list (got empty)' in msg


def test_dvc_yaml_takes_the_api_paths_from_params(root):
    import yaml

    from synthtune.core.config import load_params

    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    assert "${api.prompts}" in stages["predict"]["cmd"] and "${api.prompts}" in stages["predict"]["deps"]
    assert "api.prompts" in stages["predict"]["params"] and "api" in stages["score"]["params"]
    assert "${api.docs} ${api.prompts}" in stages["score"]["cmd"]
    assert {"${api.docs}", "${api.prompts}"} <= set(stages["score"]["deps"])
    assert not any("data/seeds/api" in str(stage) for stage in (stages["predict"], stages["score"]))
    api = load_params(root / "params.yaml").api          # the defaults: the shipped files
    assert (api.docs, api.prompts) == ("data/seeds/api", "data/seeds/api_prompts.jsonl")


def test_bad_api_document_is_one_line_naming_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"functions": [{"name": "ui.x",}]}')
    with pytest.raises(InputError, match=r"broken\.json: API document is not valid JSON: .*line 1 column") as err:
        load_api_docs(tmp_path)
    assert "\n" not in str(err.value)
    bad.write_text('{"functions": [{"name": "ui x"}]}')
    with pytest.raises(InputError, match=r"broken\.json: functions\[0\]"):
        load_api_docs(tmp_path)
    with pytest.raises(InputError, match="no API documents"):
        load_api_docs(tmp_path / "missing")


def score_workspace(tmp_path, root, doc_text: str, prompts_name: str, prompts_text: str, api_rows=None):
    """A score stage's inputs: one scored turn, one model `m`, the given API document and prompt file."""
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "x.json").write_text(doc_text)
    (tmp_path / "formatted").mkdir()
    (tmp_path / "formatted" / "test.jsonl").write_text(json.dumps(
        {"id": "d", "source": "s", "messages": [{"role": "user", "content": "q"},
                                                {"role": "assistant", "content": "a"}], "gold": []}) + "\n")
    (tmp_path / "formatted" / "train.jsonl").write_text("")
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "m.jsonl").write_text(json.dumps({"id": "d:1", "output": "a"}) + "\n")
    if api_rows is not None:
        (tmp_path / "pred" / "api").mkdir()
        (tmp_path / "pred" / "api" / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in api_rows))
    (tmp_path / prompts_name).write_text(prompts_text)
    return ["score", str(tmp_path / "formatted"), str(tmp_path / "pred"), str(root / "data/seeds/graphs"),
            str(tmp_path / "api"), str(tmp_path / prompts_name), str(tmp_path / "m.json"),
            str(tmp_path / "plots"), "--params", str(root / "params.yaml")]


def run_score(monkeypatch, capsys, argv) -> str | None:
    """Run the score stage; the last stderr line when it fails (exit code 2), None when it succeeds."""
    from synthtune.core.cli import run_stage
    from stages import score

    monkeypatch.setattr(sys, "argv", argv)
    try:
        run_stage(score.main)
    except SystemExit as exit_info:
        assert exit_info.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]
    return None


def test_score_stage_reports_bad_api_json_as_one_line(tmp_path, root, monkeypatch, capsys):
    argv = score_workspace(tmp_path, root, "{not json", "prompts.jsonl",
                           json.dumps({"id": "p", "prompt": "x", "reference": "ui.draw()"}) + "\n")
    err = run_score(monkeypatch, capsys, argv)
    assert err.startswith("error: ") and "x.json: API document is not valid JSON" in err


def test_score_stage_scores_a_seed_document_with_csv_prompts(tmp_path, root, monkeypatch, capsys):
    answers = [{"id": "line2", "output": "ui.newButton('a'):setLabel('b')"}, {"id": "line3", "output": "No idea."}]
    argv = score_workspace(tmp_path, root, json.dumps(SEED_DOC), "prompts.csv",
                           "prompt,reference\nMake a button,ui.newButton('x') ui.draw()\nDraw,\n", answers)
    assert run_score(monkeypatch, capsys, argv) is None
    card = json.loads((tmp_path / "m.json").read_text())["m"]
    assert card["api_match_precision"] == 1.0 and card["api_no_call_rate"] == 0.5
    assert card["api_match_recall"] == 0.5 and card["api_prompts_with_reference"] == 1 and card["api_prompts"] == 2


@pytest.mark.parametrize("doc, name, prompts, expected", [
    ('{"endpoints": []}', "p.jsonl", '{"prompt": "x"}\n',
     "x.json: unknown API document shape (keys ['endpoints']); expected {\"functions\""),
    (json.dumps(SEED_DOC), "p.csv", "question\nx\n", 'p.csv: CSV has no "prompt" column (header: [\'question\']); expected'),
    (json.dumps(SEED_DOC), "p.txt", "x\n", "p.txt: unknown API prompt file type '.txt'; expected .jsonl"),
])
def test_score_stage_bad_api_inputs_are_one_line(tmp_path, root, monkeypatch, capsys, doc, name, prompts, expected):
    err = run_score(monkeypatch, capsys, score_workspace(tmp_path, root, doc, name, prompts))
    assert err.startswith("error: ") and expected in err


def test_prediction_ids_must_match_the_prompts(api):
    prompts = [{"id": "a", "prompt": "p", "reference": "ui.draw()"}, {"id": "b", "prompt": "q", "reference": ""}]
    with pytest.raises(InputError, match="prediction ids do not match the API prompts"):
        score_api_predictions(api, prompts, [{"id": "a", "output": ""}], "api/m.jsonl")


def test_shipped_documents_and_references_agree(root):
    api = load_api_docs(root / "data/seeds/api")
    rows = [json.loads(line) for line in (root / "data/seeds/api_prompts.jsonl").read_text().splitlines()]
    assert len(rows) >= 15 and len({r["id"] for r in rows}) == len(rows) and len(api) >= 40
    refs = [r["reference"] for r in rows]
    perfect = api_match(refs, refs, api)
    assert perfect["api_match_precision"] == 1.0 and perfect["api_match_recall"] == 1.0
    assert perfect["api_invented_rate"] == 0.0 and perfect["api_calls_per_answer"] >= 3
