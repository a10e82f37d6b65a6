"""API-grounded code records (luacoder): every snippet calls only documented functions, and the one asked for."""
from __future__ import annotations

import json
from pathlib import Path

from synthtune.core.config import SourceParams
from synthtune.core.records import validate_record
from synthtune.evaluate.metrics.api_match import api_match, extract_calls, load_api_docs
from synthtune.generate.api_code import api_code_records, read_api_functions, task_of, voice_api_code
from synthtune.generate.sources import generate_source
from synthtune.llm.teacher import ChatRequest, ChatResponse

API = Path(__file__).resolve().parents[2] / "data/seeds/api"


def test_snippets_call_exactly_documented_functions_and_the_one_asked_for():
    functions = read_api_functions(API)
    records = api_code_records("lua", "lua_api", functions, n_records=120, seed=1)
    index = load_api_docs(API)
    answers = [r["messages"][1]["content"] for r in records]
    # scored by the api-match metric itself: nothing invented, every answer calls something
    scores = api_match(answers, answers, index)
    assert scores["api_invented_rate"] == 0.0 and scores["api_no_call_rate"] == 0.0
    for record in records:
        assert validate_record(record) is None and record["messages"][1]["content"].startswith("```lua\n")
        calls = extract_calls(record["messages"][1]["content"], index)
        for name in record["meta"]["functions"]:
            assert (":" + name.split(":")[1] if ":" in name else name) in calls
        assert record["messages"][0]["content"].endswith("Lua API.")
    singles = [r for r in records if len(r["meta"]["functions"]) == 1]
    assert len({r["meta"]["functions"][0] for r in singles}) == len(singles) >= 50      # one per function first
    assert api_code_records("lua", "lua_api", functions, 120, 1) == records             # deterministic


def test_methods_get_their_object_and_tasks_read_as_instructions():
    functions = read_api_functions(API)
    records = api_code_records("lua", "lua_api", functions, 200, 1)
    sprite = next(r for r in records if r["meta"]["functions"] == ["Sprite:draw"])["messages"][1]["content"]
    assert 'sprite = gfx.newSprite("player.png")' in sprite and "function game.draw()" in sprite
    assert "sprite:draw(100, 80)" in sprite
    window = next(f for f in functions if f.name == "ui.newWindow")
    assert task_of(window) == "create a movable window"
    assert task_of(next(f for f in functions if f.name == "game.getTime")) == "get seconds since the game started"


def test_the_seeds_apis_shape_and_the_source_kind(tmp_path, root):
    doc = tmp_path / "api.json"
    doc.write_text(json.dumps({"apis": [{"name": "net.get", "signature": "net.get(url: string) -> string",
                                         "doc": "Fetches a URL."}]}))
    out = generate_source("api", SourceParams(kind="api_code", path=str(doc), n_records=5), doc, 0)
    assert [r["messages"][0]["content"] for r in out.records] == ["Fetch a URL. Use the api Lua API."]
    assert out.metrics["functions"] == 1 and out.metrics["voiced_rate"] == 1.0


def test_an_llm_snippet_missing_its_function_keeps_the_rule_snippet():
    functions = read_api_functions(API)
    records = api_code_records("lua", "lua_api", functions, 3, 1)

    class Teacher:
        backend, model = "openai", "m"

        def __init__(self):
            self.seen = []

        def complete(self, requests, offline=None):
            self.seen.extend(requests)
            return [ChatResponse(text="```lua\nprint('hi')\n```") if "End the game" in r.messages[1]["content"]
                    else ChatResponse(text=r.meta["template"] + "\n") for r in requests]

    teacher = Teacher()
    voiced = voice_api_code(records, functions, teacher, ChatRequest, reasks=1)
    assert [v["meta"]["voiced"] for v in voiced] == [False, True, True]
    assert voiced[0]["meta"]["fallback_reason"] == "does not call game.quit"
    assert voiced[0]["messages"] == records[0]["messages"]
    assert "- game.quit(): Ends the game after the current frame." in teacher.seen[0].messages[0]["content"]
    assert sum(r.sample == 1 for r in teacher.seen) == 1                     # one re-ask, for the bad one


def test_text_records_are_the_snippets_as_lua_files_in_their_chat_records_split():
    source = SourceParams(kind="api_code", path=str(API), n_records=12, text_records=True)
    out = generate_source("lua", source, API, 0)
    chats = [r for r in out.records if "messages" in r]
    texts = [r for r in out.records if "text" in r]
    assert len(chats) == len(texts) == 12 and out.metrics["records"] == 24 and out.metrics["text_records"] == 12
    for chat, text in zip(chats, texts):
        assert validate_record(text) is None and "messages" not in text
        # same group: prepare splits by group, so a held-out snippet never trains as text
        assert text["group"] == chat["group"] and text["meta"]["functions"] == chat["meta"]["functions"]
        task, code = chat["messages"][0]["content"], chat["messages"][1]["content"]
        assert text["text"] == f"-- {task}\n" + code.removeprefix("```lua\n").removesuffix("```")
        assert "```" not in text["text"]
    # off by default: only chat records, and the ids of those do not depend on the switch
    plain = generate_source("lua", SourceParams(kind="api_code", path=str(API), n_records=12), API, 0)
    assert plain.records == chats and plain.metrics["text_records"] == 0
