"""synthtune.generate.loaders: every user-data format -> canonical records, bad rows -> rejects with file/line/reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthtune.core.errors import InputError
from synthtune.generate.loaders import LOADERS, Loaded, load_source, to_seq2seq
from synthtune.core.records import record_id, validate_record

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "loaders"


def check_records(loaded: Loaded, source: str) -> None:
    for record in loaded.records:
        assert record["source"] == source
        assert record["id"] == record_id(record)
        if not record["meta"].get("prompt_only"):
            assert validate_record(record) is None
        assert record["group"].startswith(f"{source}:")
        assert isinstance(record["meta"]["file"], str) and isinstance(record["meta"]["line"], int)
    for reject in loaded.rejects:
        assert set(reject) == {"file", "line", "reason"}
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
    assert second["meta"] == {"file": str(path), "line": 2}
    assert second["group"] == f"alp:{second['id']}"
    assert out.records[0]["messages"][0]["content"] == "Name a citrus fruit."   # empty input: no "\n\n"
    assert out.records[2]["messages"][0]["content"] == "Give a synonym for quick."  # missing input
    assert out.rejects == [{"file": str(path), "line": 3,
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
    assert first["meta"] == {"file": str(path), "line": 1, "split": "train"}
    assert out.rejects == [{"file": str(path), "line": 3, "reason": "train item 3: missing answer field 'Answer'"}]


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
    assert out.rejects == [{"file": str(path), "line": 4, "reason": "field 'prompt' is empty"}]


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
    assert out.rejects == [{"file": str(path), "line": 3, "reason": "invalid UTF-8"}]
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
    assert out.records[1]["meta"] == {"file": str(path), "line": 2, "dataset": "json", "split": "train"}
    assert out.rejects == [{"file": str(path), "line": 3, "reason": "row 3: missing output field 'a'"}]


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
    assert out.rejects[0]["line"] == 2 and "unknown role 'wizard'" in out.rejects[0]["reason"]


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
