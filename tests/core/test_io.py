"""Issue 14 in synthtune.core: BOMs, reject codes, and the mode of the files the stages write."""
import os
import pickle
import stat

import pytest

from synthtune.core.io import atomic_open, iter_jsonl_lines, read_json, read_jsonl, write_json, write_jsonl
from synthtune.core.records import OTHER_CODE, REJECT_CODES, Problem, validate_record

GOOD = {"source": "s", "group": "g1", "messages": [{"role": "user", "content": "hi"},
                                                   {"role": "assistant", "content": "hello"}]}


# ---------------------------------------------------------------- a UTF-8 byte order mark

def test_a_bom_does_not_cost_the_first_jsonl_row(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n{"a": 2}\n')
    assert list(iter_jsonl_lines(path)) == [(1, {"a": 1}, None), (2, {"a": 2}, None)]
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_a_bom_alone_on_the_first_line_is_a_blank_line(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf\n{"a": 2}\n')
    assert read_jsonl(path) == [{"a": 2}]


def test_a_bom_later_in_the_file_is_still_bad_json(tmp_path):
    # only a file's first bytes can be a byte order mark; elsewhere U+FEFF is a stray character
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n\xef\xbb\xbf{"a": 2}\n')
    rows = list(iter_jsonl_lines(path))
    assert rows[1][0] == 2 and rows[1][2].code == "malformed_json"


def test_read_json_accepts_a_bom(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": [1]}')
    assert read_json(path) == {"a": [1]}


# ---------------------------------------------------------------- reject codes

def test_jsonl_line_errors_carry_codes_and_never_quote_the_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\nroot:x:0:0:hunter2\n{"a": "\xff"}\n')
    errors = {n: e for n, _, e in iter_jsonl_lines(path) if e is not None}
    assert {n: e.code for n, e in errors.items()} == {2: "malformed_json", 3: "invalid_utf8"}
    assert errors[2] == "invalid JSON: Expecting value (column 1)" and "hunter2" not in errors[2]
    assert errors[3] == "invalid UTF-8 at byte 7"


@pytest.mark.parametrize("record, code", [
    ([1, 2], "wrong_type"),
    ({**GOOD, "extra": 1}, "unknown_field"),
    ({k: v for k, v in GOOD.items() if k != "group"}, "missing_field"),
    ({**GOOD, "group": ""}, "empty_field"),
    ({**GOOD, "source": 3}, "wrong_type"),
    ({**GOOD, "meta": []}, "wrong_type"),
    ({**GOOD, "text": "both"}, "messages_or_text"),
    ({"source": "s", "group": "g"}, "messages_or_text"),
    ({"source": "s", "group": "g", "text": 5}, "wrong_type"),
    ({"source": "s", "group": "g", "text": " "}, "empty_field"),
    ({**GOOD, "messages": []}, "empty_field"),
    ({**GOOD, "messages": "hi"}, "wrong_type"),
    ({**GOOD, "messages": ["hi"]}, "wrong_type"),
    ({**GOOD, "messages": [{"role": "bot", "content": "x"}]}, "unknown_role"),
    ({**GOOD, "messages": [{"role": "user"}]}, "missing_field"),
    ({**GOOD, "messages": [{"role": "user", "content": 3}]}, "wrong_type"),
    ({**GOOD, "messages": [{"role": "user", "content": ""}]}, "empty_field"),
    ({**GOOD, "messages": [{"role": "user", "content": "x", "annotations": 1}]}, "wrong_type"),
    ({**GOOD, "messages": [{"role": "user", "content": "only a question"}]}, "no_assistant_turn"),
])
def test_validate_record_exposes_a_code(record, code):
    problem = validate_record(record)
    assert isinstance(problem, Problem) and problem.code == code and isinstance(problem, str)
    assert validate_record(GOOD) is None


def test_problem_codes_are_the_documented_ones():
    with pytest.raises(ValueError, match="REJECT_CODES"):
        Problem("why", "not_a_code")
    assert OTHER_CODE not in REJECT_CODES           # `other` is only the fallback for old reject files
    assert all(code.isidentifier() and code.islower() for code in REJECT_CODES)
    problem = pickle.loads(pickle.dumps(Problem("bad", "wrong_type")))
    assert problem == "bad" and problem.code == "wrong_type"


# ---------------------------------------------------------------- the mode of written files

def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Run with a given umask and restore the old one (tests run in one thread)."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_usual_mode_not_mkstemps_0600(tmp_path, umask, mask, mode):
    umask(mask)
    write_json(tmp_path / "m.json", {"a": 1})
    write_jsonl(tmp_path / "r.jsonl", [{"a": 1}])
    with atomic_open(tmp_path / "b.bin", "wb") as handle:
        handle.write(b"\x00")
    assert {p.name: _mode(p) for p in tmp_path.iterdir()} == {"m.json": mode, "r.jsonl": mode, "b.bin": mode}


def test_replacing_a_file_stays_atomic_and_leaves_no_temp_file(tmp_path, umask):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"a": 1}])
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write("partial")
            raise RuntimeError("killed")
    write_jsonl(path, [{"a": 2}])
    assert read_jsonl(path) == [{"a": 2}] and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert _mode(path) == 0o644
