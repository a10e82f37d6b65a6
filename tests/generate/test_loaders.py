"""synthtune.generate.loaders: every user-data format -> canonical records, bad rows -> rejects with file/line/reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthtune.core.errors import InputError
from synthtune.generate.loaders import LOADERS, Loaded, load_source, to_seq2seq
from synthtune.core.records import REJECT_CODES, record_id, validate_record

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "loaders"


def check_records(loaded: Loaded, source: str) -> None:
    for record in loaded.records:
        assert record["source"] == source
        assert record["id"] == record_id(record)
        if not record["meta"].get("prompt_only"):
            assert validate_record(record) is None
        assert record["group"].startswith(f"{source}:")
        line = record["meta"]["line"]
        assert isinstance(record["meta"]["file"], str) and (isinstance(line, int) or "row" in record["meta"])
    for reject in loaded.rejects:
        assert {"file", "line", "code", "reason"} <= set(reject) <= {"file", "line", "code", "reason", "item", "row"}
        assert reject["code"] in REJECT_CODES
        assert "\n" not in reject["reason"]


def by_line(rejects: list[dict]) -> dict[int, str]:
    return {r["line"]: r["reason"] for r in rejects}


# ---------------------------------------------------------------- alpaca

def test_alpaca_json_array():
    path = FIX / "alpaca.json"
    out = load_source("alpaca", path, source="alp", domain="food")
    check_records(out, "alp")
    assert len(out.records) == 3
    second = out.records[1]
    assert second["messages"] == [{"role": "user", "content": "Translate to French.\n\nGood morning"},
                                  {"role": "assistant", "content": "Bonjour."}]
    assert second["domain"] == "food"
    assert second["meta"] == {"file": str(path), "line": 3, "item": 2}     # the file line of item 2
    assert second["group"] == f"alp:{second['id']}"
    assert out.records[0]["messages"][0]["content"] == "Name a citrus fruit."   # empty input: no "\n\n"
    assert out.records[2]["messages"][0]["content"] == "Give a synonym for quick."  # missing input
    assert out.rejects == [{"file": str(path), "line": 4, "item": 3, "code": "wrong_type",
                            "reason": "item 3: field 'output' must be a string, got int"}]


def test_alpaca_jsonl_mapping_and_bad_lines():
    path = FIX / "alpaca.jsonl"
    out = load_source("alpaca", path, source="alp",
                      mapping={"instruction": "prompt", "input": "context", "output": "answer"})
    check_records(out, "alp")
    assert [r["meta"]["line"] for r in out.records] == [1, 2, 7]
    assert out.records[1]["messages"][0]["content"] == "Summarize:\n\nThe cat sat on the mat."
    reasons = by_line(out.rejects)
    assert set(reasons) == {3, 4, 6}
    assert reasons[3].startswith("invalid JSON")
    assert reasons[4].startswith("invalid UTF-8")
    assert "'prompt'" in reasons[6] and "empty" in reasons[6]
    assert all(r["file"] == str(path) for r in out.rejects)


def test_alpaca_group_field(tmp_path):
    path = tmp_path / "g.jsonl"
    rows = [{"instruction": "a", "output": "b", "doc": "d1"}, {"instruction": "c", "output": "d", "doc": "d1"},
            {"instruction": "e", "output": "f"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = load_source("alpaca", path, source="s", mapping={"group": "doc"})
    assert [r["group"] for r in out.records] == ["s:d1", "s:d1"]
    assert out.rejects[0]["line"] == 3 and "group field 'doc'" in out.rejects[0]["reason"]


# ---------------------------------------------------------------- qa_json

def test_qa_json_keeps_split():
    path = FIX / "qa.json"
    out = load_source("qa_json", path, source="qa")
    check_records(out, "qa")
    assert [r["meta"]["split"] for r in out.records] == ["train", "train", "test", "val"]
    first = out.records[0]
    assert first["messages"] == [{"role": "user", "content": "What is the boiling point of water?"},
                                 {"role": "assistant", "content": "100 degrees Celsius at sea level."}]
    assert first["meta"] == {"file": str(path), "line": 3, "item": 1, "split": "train"}
    assert [r["meta"]["line"] for r in out.records] == [3, 4, 8, 11]
    assert out.rejects == [{"file": str(path), "line": 5, "item": 3, "code": "missing_field",
                            "reason": "train item 3: missing answer field 'Answer'"}]


# ---------------------------------------------------------------- chat

def test_chat():
    path = FIX / "chat.jsonl"
    out = load_source("chat", path, source="c")
    check_records(out, "c")
    assert [r["meta"]["line"] for r in out.records] == [1, 6]
    assert out.records[0]["messages"] == [{"role": "system", "content": "You are terse."},
                                          {"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": "Hello."}]
    reasons = by_line(out.rejects)
    assert set(reasons) == {2, 3, 4, 5}
    assert "unknown role 'robot'" in reasons[2]
    assert "empty" in reasons[3]
    assert "missing field 'messages'" in reasons[4]
    assert "no assistant turn" in reasons[5]


def test_chat_group_mapping():
    out = load_source("chat", FIX / "chat.jsonl", source="c", mapping={"group": "topic"})
    assert [r["group"] for r in out.records] == ["c:t1"]          # line 1 has no topic -> reject
    assert any(r["line"] == 1 and "group field 'topic'" in r["reason"] for r in out.rejects)


# ---------------------------------------------------------------- text

def test_text():
    path = FIX / "text.jsonl"
    out = load_source("text", path, source="code", domain="code")
    check_records(out, "code")
    assert [r["meta"]["line"] for r in out.records] == [1, 2, 5]
    assert out.records[0]["text"] == "def add(a, b):\n    return a + b\n"
    assert "messages" not in out.records[0]
    reasons = by_line(out.rejects)
    assert reasons == {3: "field 'content' must be a string, got int", 4: "field 'content' is empty"}


def test_text_mapping(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"body": "hello world"}) + "\n")
    out = load_source("text", path, source="t", mapping={"content": "body"})
    assert out.records[0]["text"] == "hello world" and not out.rejects


# ---------------------------------------------------------------- oasst

def test_oasst_paths_filters_and_groups():
    path = FIX / "oasst.jsonl"
    out = load_source("oasst", path, source="oa")
    check_records(out, "oa")
    tree1 = [r for r in out.records if r["meta"]["tree_id"] == "tree-1"]
    assert len(tree1) == 2                                     # two branches -> two conversations
    assert {r["group"] for r in tree1} == {"oa:tree-1"}
    assert tree1[0]["messages"] == [
        {"role": "user", "content": "How do I make rice fluffy?"},
        {"role": "assistant", "content": "Rinse it first."},
        {"role": "user", "content": "Why rinse?"},
        {"role": "assistant", "content": "Rinsing removes surface starch."}]
    assert tree1[1]["messages"][-1]["content"] == "About 1.25 cups per cup of rice."
    assert tree1[0]["meta"] == {"file": str(path), "line": 1, "tree_id": "tree-1", "lang": "en",
                                "leaf_message_id": "m1a"}
    tree2 = [r for r in out.records if r["meta"]["tree_id"] == "tree-2"]
    assert len(tree2) == 1                                     # short branch skipped by min_messages
    assert [m["role"] for m in tree2[0]["messages"]] == ["user", "assistant", "user", "assistant"]
    assert tree2[0]["messages"][-1]["content"] == "Usually, yes."   # trailing "Great, thanks!" dropped
    assert out.skipped == 2 and out.skipped_by == {"min_messages": 1, "lang": 1}
    assert len(out.rejects) == 1 and out.rejects[0]["line"] == 4
    assert "unknown role 'moderator'" in out.rejects[0]["reason"]


def test_oasst_options():
    out = load_source("oasst", FIX / "oasst.jsonl", source="oa", options={"lang": None, "min_messages": 2})
    trees = [r["meta"]["tree_id"] for r in out.records]
    assert trees.count("tree-3") == 1 and trees.count("tree-2") == 2 and out.skipped == 0
    out = load_source("oasst", FIX / "oasst.jsonl", source="oa", options={"lang": "de"})
    assert [r["meta"]["tree_id"] for r in out.records] == ["tree-3"]
    with pytest.raises(InputError, match="min_messages"):
        load_source("oasst", FIX / "oasst.jsonl", source="oa", options={"min_messages": 0})


def test_oasst_duplicate_after_trim(tmp_path):
    tree = {"message_tree_id": 7, "prompt": {"role": "prompter", "text": "q", "lang": "en", "replies": [
        {"role": "assistant", "text": "a", "lang": "en", "replies": [
            {"role": "prompter", "text": "x", "lang": "en"}, {"role": "prompter", "text": "y", "lang": "en"}]}]}}
    path = tmp_path / "o.jsonl"
    path.write_text(json.dumps(tree) + "\n")
    out = load_source("oasst", path, source="oa", options={"min_messages": 2})
    assert len(out.records) == 1 and out.records[0]["group"] == "oa:7"
    assert out.skipped_by == {"duplicate_path": 1}


def test_to_seq2seq():
    out = load_source("oasst", FIX / "oasst.jsonl", source="oa")
    pair = to_seq2seq(out.records[0])
    assert pair == {"input": "<Role user>How do I make rice fluffy?\n<Role bot>Rinse it first.\n<Role user>Why rinse?",
                    "output": "Rinsing removes surface starch."}
    with pytest.raises(ValueError):
        to_seq2seq({"messages": [{"role": "user", "content": "hi"}]})


# ---------------------------------------------------------------- csv

def test_csv_prompt_only():
    path = FIX / "prompts.csv"
    out = load_source("csv", path, source="eval")
    check_records(out, "eval")
    assert len(out.records) == 3
    first = out.records[0]
    assert first["messages"] == [{"role": "user", "content": "How do I peel garlic quickly?"}]
    assert first["meta"] == {"file": str(path), "line": 2, "prompt_only": True}
    assert first["id"] == record_id(first)
    assert validate_record(first) is None   # valid as a prompt-only record; format leaves it out of training
    assert out.rejects == [{"file": str(path), "line": 4, "code": "empty_field", "reason": "field 'prompt' is empty"}]


def test_csv_pairs_mapping():
    path = FIX / "pairs.csv"
    out = load_source("csv", path, source="p", mapping={"prompt": "question", "response": "reply"})
    check_records(out, "p")
    assert [r["meta"]["line"] for r in out.records] == [2, 4]
    assert out.records[1]["messages"] == [{"role": "user", "content": "Multi-line answer?"},
                                          {"role": "assistant", "content": "Line one.\nLine two."}]
    assert "prompt_only" not in out.records[0]["meta"]
    assert by_line(out.rejects) == {3: "expected 3 columns, got 1", 6: "field 'reply' is empty"}


def test_csv_bad_bytes_big_cell_and_missing_column(tmp_path):
    path = tmp_path / "x.csv"
    big = "b" * (10 * 1024 * 1024)
    path.write_bytes(b"prompt,response\nq1,a1\nq\xff2,a2\nq3," + big.encode() + b"\n")
    out = load_source("csv", path, source="x")
    assert [r["meta"]["line"] for r in out.records] == [2, 4]
    assert len(out.records[1]["messages"][1]["content"]) == len(big)
    assert out.rejects == [{"file": str(path), "line": 3, "code": "invalid_utf8", "reason": "invalid UTF-8"}]
    with pytest.raises(InputError, match="column 'nope'"):
        load_source("csv", path, source="x", mapping={"response": "nope"})


# ---------------------------------------------------------------- hf (local files only)

HF_ROWS = [{"q": "What is umami?", "ctx": "", "a": "A savory taste."},
           {"q": "Define julienne.", "ctx": "knife skills", "a": "Thin matchstick cuts."},
           {"q": "Missing answer", "ctx": "", "a": None}]


def test_hf_json(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in HF_ROWS))
    out = load_source("hf", path, source="h", mapping={"instruction": "q", "input": "ctx", "output": "a"},
                      options={"dataset": "json", "cache_dir": tmp_path / "cache"})
    check_records(out, "h")
    assert len(out.records) == 2
    assert out.records[1]["messages"] == [{"role": "user", "content": "Define julienne.\n\nknife skills"},
                                          {"role": "assistant", "content": "Thin matchstick cuts."}]
    assert out.records[1]["meta"] == {"file": str(path), "line": None, "row": 2, "dataset": "json", "split": "train"}
    assert out.rejects == [{"file": str(path), "line": None, "row": 3, "code": "missing_field",
                            "reason": "row 3: missing output field 'a'"}]


def test_hf_parquet_chat(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"messages": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
                         [{"role": "user", "content": "hm"}, {"role": "wizard", "content": "poof"}]],
            "thread": ["t1", "t2"]}
    path = tmp_path / "chat.parquet"
    pq.write_table(pa.table(rows), path)
    out = load_source("hf", path, source="h", mapping={"group": "thread"},
                      options={"dataset": "parquet", "cache_dir": tmp_path / "cache"})
    check_records(out, "h")
    assert [r["messages"] for r in out.records] == [rows["messages"][0]]
    assert out.records[0]["group"] == "h:t1"
    assert out.rejects[0]["row"] == 2 and "unknown role 'wizard'" in out.rejects[0]["reason"]


def test_hf_errors(tmp_path):
    with pytest.raises(InputError, match="dataset"):
        load_source("hf", tmp_path / "x.jsonl", source="h")
    with pytest.raises(InputError, match="file not found"):
        load_source("hf", tmp_path / "x.jsonl", source="h", options={"dataset": "json"})


# ---------------------------------------------------------------- scale, errors

def test_thousand_good_ten_bad(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines, bad_lines = [], set()
    for i in range(1010):
        if i % 101 == 50:
            bad = ['{"instruction": "x", ', '{"instruction": "x", "output": 3}', '{"instruction": ""}',
                   '[1, 2]', '"just a string"'][len(bad_lines) % 5]
            lines.append(bad)
            bad_lines.add(i + 1)
        else:
            lines.append(json.dumps({"instruction": f"question {i}", "output": f"answer {i}"}))
    path.write_text("\n".join(lines) + "\n")
    out = load_source("alpaca", path, source="m")
    assert len(out.records) == 1000 and len(out.rejects) == 10
    assert {r["line"] for r in out.rejects} == bad_lines
    assert len({r["id"] for r in out.records}) == 1000


def test_huge_line_does_not_crash(tmp_path):
    path = tmp_path / "big.jsonl"
    big = "x" * (10 * 1024 * 1024)
    path.write_text(json.dumps({"content": big}) + "\n" + '{"content": "' + big + "\n")
    out = load_source("text", path, source="b")
    assert len(out.records) == 1 and len(out.records[0]["text"]) == len(big)
    assert out.rejects[0]["line"] == 2 and out.rejects[0]["reason"].startswith("invalid JSON")


@pytest.mark.parametrize("kind", [k for k in LOADERS if k != "hf"])
def test_missing_and_empty_file(tmp_path, kind):
    with pytest.raises(InputError, match="nope.jsonl: file not found"):
        load_source(kind, tmp_path / "nope.jsonl", source="s")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="empty.jsonl: file is empty"):
        load_source(kind, empty, source="s")


def test_hf_empty_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(InputError, match="file is empty"):
        load_source("hf", empty, source="s", options={"dataset": "json"})


def test_unknown_kind_and_keys():
    with pytest.raises(InputError, match="unknown loader kind 'xml'"):
        load_source("xml", FIX / "chat.jsonl", source="s")
    with pytest.raises(InputError, match="unknown mapping key"):
        load_source("chat", FIX / "chat.jsonl", source="s", mapping={"instructions": "x"})
    with pytest.raises(InputError, match="unknown options key"):
        load_source("alpaca", FIX / "alpaca.json", source="s", options={"lang": "en"})


def test_jsonl_starting_with_list_row_and_broken_array(tmp_path):
    path = tmp_path / "l.jsonl"
    path.write_text('[1]\n{"instruction": "a", "output": "b"}\n')
    out = load_source("alpaca", path, source="s")
    assert len(out.records) == 1 and out.rejects[0]["line"] == 1
    broken = tmp_path / "b.json"
    broken.write_text('[\n {"instruction": "a", "output": "b"},\n')
    with pytest.raises(InputError, match="b.json: invalid JSON array"):
        load_source("alpaca", broken, source="s")


# ---------------------------------------------------------------- issue 14: rows that got the wrong answer

def _msg(role, text, *replies, **extra):
    return {"role": role, "text": text, "lang": "en", "replies": list(replies), **extra}


def test_oasst_deleted_and_failed_review_subtrees_are_skipped_and_counted(tmp_path):
    tree = {"message_tree_id": "t", "prompt": _msg("prompter", "q", *[
        _msg("assistant", "kept answer", _msg("prompter", "follow-up", _msg("assistant", "kept reply"))),
        # deleted: neither it nor its two leaves below become conversations (and its bad role is not read)
        _msg("assistant", "spam", _msg("prompter", "x", _msg("assistant", "leaf 1"), _msg("wizard", "leaf 2")),
             deleted=True),
        _msg("assistant", "rude", _msg("prompter", "y", _msg("assistant", "leaf 3")), review_result=False),
        _msg("assistant", "not reviewed yet", review_result=None),          # null: kept
    ])}
    only_bad_replies = {"message_tree_id": "u", "prompt": _msg("prompter", "q2", _msg("assistant", "a2", *[
        _msg("prompter", "gone", _msg("assistant", "z"), deleted=True)]))}
    path = tmp_path / "o.jsonl"
    path.write_text(json.dumps(tree) + "\n" + json.dumps(only_bad_replies) + "\n")
    out = load_source("oasst", path, source="oa", options={"min_messages": 2})
    contents = [[m["content"] for m in r["messages"]] for r in out.records]
    assert contents == [["q", "kept answer", "follow-up", "kept reply"], ["q", "not reviewed yet"],
                        ["q2", "a2"]]                       # a2 ends a conversation once its reply is cut
    assert out.rejects == []
    assert out.skipped_by == {"deleted": 3, "review_failed": 1} and out.skipped == 4


def test_oasst_deleted_root_skips_the_whole_tree(tmp_path):
    path = tmp_path / "o.jsonl"
    path.write_text(json.dumps({"message_tree_id": 1, "prompt": _msg("prompter", "q", _msg("assistant", "a"),
                                                                     deleted=True)}) + "\n")
    out = load_source("oasst", path, source="oa", options={"min_messages": 1})
    assert out.records == [] and out.rejects == [] and out.skipped_by == {"deleted": 1}


@pytest.mark.parametrize("kind, row", [("alpaca", {"instruction": "a", "output": "b"}),
                                       ("chat", {"messages": [{"role": "user", "content": "hi"},
                                                              {"role": "assistant", "content": "yo"}]}),
                                       ("text", {"content": "def f(): pass"}),
                                       ("oasst", {"message_tree_id": 1, "prompt": _msg("prompter", "q",
                                                                                         _msg("assistant", "a"))})])
def test_a_byte_order_mark_does_not_cost_the_first_row(tmp_path, kind, row):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(row) + "\n").encode() * 2)
    options = {"min_messages": 1} if kind == "oasst" else {}
    out = load_source(kind, path, source="s", options=options)
    assert out.rejects == []
    assert [r["meta"]["line"] for r in out.records] == [1, 2]


def test_a_byte_order_mark_before_a_json_array(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"instruction": "a", "output": "b"}]).encode())
    out = load_source("alpaca", path, source="s")
    assert len(out.records) == 1 and out.rejects == []


@pytest.mark.parametrize("delimiter", ["||", "", 5, None, True])
def test_csv_delimiter_must_be_one_character(delimiter):
    with pytest.raises(InputError) as exc:
        load_source("csv", FIX / "prompts.csv", source="c", options={"delimiter": delimiter})
    assert str(exc.value) == f"loader 'csv': option delimiter must be one character, got {delimiter!r}"


@pytest.mark.parametrize("delimiter", ['"', "\n", "\r"])
def test_csv_delimiter_cannot_be_a_quote_or_line_break(delimiter):
    with pytest.raises(InputError) as exc:
        load_source("csv", FIX / "prompts.csv", source="c", options={"delimiter": delimiter})
    assert str(exc.value) == f"loader 'csv': option delimiter cannot be a quote or a line break, got {delimiter!r}"


def test_csv_other_delimiters_work(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("prompt\tresponse\nq1\ta1\n")
    out = load_source("csv", path, source="c", options={"delimiter": "\t"})
    assert [m["content"] for m in out.records[0]["messages"]] == ["q1", "a1"]


def test_every_reject_has_a_stable_code(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([
        b'{"instruction": "a", "output": "b"}',
        b'{"instruction": ',                                   # 2
        b'{"instruction": "\xff"}',                            # 3
        b'[1, 2]',                                             # 4
        b'{"instruction": "a"}',                               # 5
        b'{"instruction": "a", "output": 3}',                  # 6
        b'{"instruction": "  ", "output": "b"}',               # 7
    ]) + b"\n")
    out = load_source("alpaca", path, source="s")
    check_records(out, "s")
    assert {r["line"]: r["code"] for r in out.rejects} == {
        2: "malformed_json", 3: "invalid_utf8", 4: "wrong_type", 5: "missing_field", 6: "wrong_type",
        7: "empty_field"}
    chat = load_source("chat", FIX / "chat.jsonl", source="c")
    assert {r["line"]: r["code"] for r in chat.rejects} == {2: "unknown_role", 3: "empty_field",
                                                            4: "missing_field", 5: "no_assistant_turn"}
    pairs = load_source("csv", FIX / "pairs.csv", source="p", mapping={"prompt": "question", "response": "reply"})
    assert {r["line"]: r["code"] for r in pairs.rejects} == {3: "column_count", 6: "empty_field"}


def test_an_unknown_reject_code_is_a_bug_and_a_missing_one_is_invalid_row():
    from synthtune.generate.loaders import RowBuilder, RowError

    with pytest.raises(ValueError, match="REJECT_CODES"):
        RowError("something", "made_up")
    rows = RowBuilder("f", "s", "general")
    with pytest.raises(ValueError, match="REJECT_CODES"):
        rows.reject(1, "a reason", "made_up")
    rows.reject(1, "a loader registered elsewhere gives no code")     # as loaders written before codes did
    rows.reject(2, str(RowError("nor here")), RowError("nor here").code)
    assert [r["code"] for r in rows.out.rejects] == ["invalid_row", "invalid_row"]


def test_json_array_items_report_the_file_line_they_start_on(tmp_path):
    items = [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": 7},
             {"instruction": "d\ne", "output": "f"}, "not an object"]
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(items, indent=2))     # each item spans 4 lines; "[" is line 1
    out = load_source("alpaca", path, source="s")
    assert [(r["meta"]["line"], r["meta"]["item"]) for r in out.records] == [(2, 1), (10, 3)]
    assert [(r["line"], r["item"], r["reason"]) for r in out.rejects] == [
        (6, 2, "item 2: field 'output' must be a string, got int"),
        (14, 4, "item 4: expected a JSON object, got str")]
    lines = path.read_text().splitlines()
    assert lines[5].strip() == "{" and lines[13].strip() == '"not an object"'


def test_qa_json_items_report_the_file_line_they_start_on(tmp_path):
    path = tmp_path / "qa.json"
    path.write_text('{"test": [\n\n  {"Question": "q1",\n   "Answer": "a1"},\n  {"Question": "q2"}],\n'
                    ' "train": [{"Question": "q3", "Answer": "a3"}]}\n')
    out = load_source("qa_json", path, source="q")
    assert [(r["meta"]["split"], r["meta"]["line"], r["meta"]["item"]) for r in out.records] == [
        ("test", 3, 1), ("train", 6, 1)]
    assert [(r["line"], r["item"], r["reason"]) for r in out.rejects] == [
        (5, 2, "test item 2: missing answer field 'Answer'")]


@pytest.mark.parametrize("text, message", [
    ('[\n {"instruction": "a", "output": "b"},\n', "invalid JSON array: Expecting value (line 3, column 1)"),
    ('[{"instruction": "a", "output": "b"} {"x": 1}]', "invalid JSON array: Expecting ',' delimiter (line 1, column 38)"),
    ('[{"instruction": "a", "output": "b"}] extra', "invalid JSON array: Extra data (line 1, column 39)"),
])
def test_broken_json_arrays_say_where(tmp_path, text, message):
    path = tmp_path / "b.json"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_source("alpaca", path, source="s")
    assert str(exc.value) == f"{path}: {message}"


def test_broken_qa_json_says_where(tmp_path):
    path = tmp_path / "qa.json"
    path.write_text('{"train": [{"Question": "q", "Answer": "a"}],\n "test": 5}')
    with pytest.raises(InputError) as exc:
        load_source("qa_json", path, source="q")
    assert str(exc.value) == f"{path}: split 'test' must be a list of question/answer items"
    path.write_text('{"train": [{"Question": "q", "Answer": "a"}]\n "test": []}')
    with pytest.raises(InputError) as exc:
        load_source("qa_json", path, source="q")
    assert str(exc.value) == f"{path}: invalid JSON: Expecting ',' delimiter (line 2, column 2)"


def test_a_path_outside_the_repository_is_refused(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    inside = repo / "data" / "a.jsonl"
    inside.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    outside = tmp_path / "secret.jsonl"
    outside.write_text(inside.read_text())
    assert len(load_source("alpaca", inside, source="mine", repo_root=repo).records) == 1
    for path in [outside, repo / "data" / ".." / ".." / "secret.jsonl", "/etc/passwd"]:
        with pytest.raises(InputError) as exc:
            load_source("alpaca", path, source="mine", repo_root=repo)
        assert str(exc.value) == (f"sources.mine.path: {str(path)!r} is outside the repository ({repo}); "
                                  "set sources.mine.allow_outside_repo: true to read it")
    assert len(load_source("alpaca", outside, source="mine").records) == 1     # no repo_root: library use


def test_a_relative_path_walking_out_of_the_working_directory_is_refused(tmp_path, monkeypatch):
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    (tmp_path / "x.jsonl").write_text(json.dumps({"content": "t"}) + "\n")
    with pytest.raises(InputError, match=r"^sources\.s\.path: '\.\./x\.jsonl' is outside the repository"):
        load_source("text", "../x.jsonl", source="s", repo_root=".")


def test_hf_data_files_outside_the_repository_are_refused(tmp_path):
    (tmp_path / "repo").mkdir()
    with pytest.raises(InputError, match=r"^sources\.h\.options\.data_files: .* is outside the repository"):
        load_source("hf", None, source="h", options={"dataset": "json", "data_files": str(tmp_path / "x.jsonl")},
                    repo_root=tmp_path / "repo")
    with pytest.raises(InputError, match=r"^sources\.h\.path: .* is outside the repository"):
        load_source("hf", tmp_path / "x.jsonl", source="h", options={"dataset": "json"}, repo_root=tmp_path / "repo")


def test_allow_outside_repo_is_a_loader_source_key():
    from synthtune.core.config import SourceParams

    assert SourceParams(kind="alpaca", path="x.jsonl").allow_outside_repo is False
    assert SourceParams(kind="alpaca", path="../x.jsonl", allow_outside_repo=True).allow_outside_repo is True


SECRET = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:hunter2-secret:/usr/sbin:/usr/sbin/nologin\n"


@pytest.mark.parametrize("kind", ["alpaca", "chat", "text", "oasst"])
def test_rejects_of_a_file_that_is_not_json_never_quote_it(tmp_path, kind):
    path = tmp_path / "passwd"
    path.write_bytes(SECRET)
    out = load_source(kind, path, source="s")
    assert len(out.rejects) == 2 and {r["code"] for r in out.rejects} == {"malformed_json"}
    assert not any(word in r["reason"] for r in out.rejects for word in ("root", "daemon", "hunter2", "bin"))


def test_a_csv_header_error_quotes_the_header_cut_short(tmp_path):
    path = tmp_path / "passwd"
    path.write_bytes(b"x" * 30 + b":" + SECRET)
    with pytest.raises(InputError) as exc:
        load_source("csv", path, source="s")
    assert str(exc.value) == (f"{path}: column 'prompt' (mapping 'prompt') not in the header "
                              "(1 column(s): 'xxxxxxxxxxxxxxxxxxxx...)")
