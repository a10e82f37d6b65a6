"""API match: extraction rules, the metric on hand-made cases, the shipped API documents and prompts."""
import json
import sys

import pytest

from synthtune.evaluate.metrics.api_match import api_match, code_of, extract_calls, load_api_docs, score_api_predictions, strip_lua
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
    nothing = api_match(["I cannot help"], [ref1], api)
    assert nothing["api_match_precision"] == 0.0 and nothing["api_calls_per_answer"] == 0.0


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


def test_score_stage_reports_bad_api_json_as_one_line(tmp_path, root, monkeypatch, capsys):
    from synthtune.core.cli import run_stage
    from stages import score

    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "x.json").write_text("{not json")
    (tmp_path / "formatted").mkdir()
    (tmp_path / "formatted" / "test.jsonl").write_text(json.dumps(
        {"id": "d", "source": "s", "messages": [{"role": "user", "content": "q"},
                                                {"role": "assistant", "content": "a"}], "gold": []}) + "\n")
    (tmp_path / "formatted" / "train.jsonl").write_text("")
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "m.jsonl").write_text(json.dumps({"id": "d:1", "output": "a"}) + "\n")
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"id": "p", "prompt": "x", "reference": "ui.draw()"}) + "\n")
    monkeypatch.setattr(sys, "argv", ["score", str(tmp_path / "formatted"), str(tmp_path / "pred"),
                                      str(root / "data/seeds/graphs"), str(tmp_path / "api"),
                                      str(tmp_path / "prompts.jsonl"), str(tmp_path / "m.json"),
                                      str(tmp_path / "plots"), "--params", str(root / "params.yaml")])
    with pytest.raises(SystemExit) as exit_info:
        run_stage(score.main)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err[-1].startswith("error: ") and "x.json: API document is not valid JSON" in err[-1]


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
