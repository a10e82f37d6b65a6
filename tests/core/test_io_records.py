import json

import pytest

from synthtune.core.errors import InputError
from synthtune.core.io import atomic_open, iter_jsonl_lines, read_jsonl, write_jsonl
from synthtune.core.records import normalize_record, record_id, validate_record

GOOD = {"source": "s", "group": "g1", "messages": [{"role": "user", "content": "hi"},
                                                   {"role": "assistant", "content": "hello"}]}


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write("partial")
            raise RuntimeError("killed")
    assert read_jsonl(path) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]   # no temp file left behind


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(InputError, match=rf"{path}:2: invalid JSON"):
        read_jsonl(path)


def test_iter_reports_invalid_utf8_and_keeps_going(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n{"a": 3}\n')
    rows = list(iter_jsonl_lines(path))
    assert [(n, e is None) for n, _, e in rows] == [(1, True), (2, False), (3, True)]
    assert "invalid UTF-8" in rows[1][2]


def test_missing_and_empty_files_are_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        read_jsonl(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(InputError, match="file is empty"):
        read_jsonl(tmp_path / "empty.jsonl")


@pytest.mark.parametrize("record, reason", [
    ({**GOOD, "messages": []}, "non-empty list"),
    ({**GOOD, "messages": [{"role": "bot", "content": "x"}]}, "role 'bot'"),
    ({**GOOD, "messages": [{"role": "user", "content": 3}]}, "content must be"),
    ({**GOOD, "text": "both"}, "exactly one"),
    ({k: v for k, v in GOOD.items() if k != "group"}, "'group'"),
    ({**GOOD, "extra": 1}, "unknown field"),
    ({**GOOD, "messages": [{"role": "user", "content": "only a question"}]}, "no assistant"),
    ([1, 2], "JSON object"),
])
def test_validator_reasons(record, reason):
    assert reason in validate_record(record)


def test_valid_records_pass_and_ids_are_content_hashes():
    assert validate_record(GOOD) is None
    assert validate_record({"source": "s", "group": "g", "text": "some code"}) is None
    a = normalize_record(GOOD)
    b = normalize_record({**GOOD, "messages": [{"role": "user", "content": "  hi "},
                                               {"role": "assistant", "content": "hello\n\n\n"}]})
    assert a["id"] == b["id"] == record_id(a)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_empty_file_allowed_when_asked(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    assert read_jsonl(tmp_path / "empty.jsonl", allow_empty=True) == []


def test_prompt_only_records_are_valid_only_when_marked():
    prompt = {"source": "s", "group": "g", "messages": [{"role": "user", "content": "write a loop"}]}
    assert "no assistant" in validate_record(prompt)
    assert validate_record({**prompt, "meta": {"prompt_only": True}}) is None
