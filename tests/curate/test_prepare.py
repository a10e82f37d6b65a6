import json

from synthtune.core.config import PrepareParams
from synthtune.curate.prepare import prepare_records, split_of

PARAMS = PrepareParams(val_fraction=0.1, test_fraction=0.2)


def _record(i: int, group: str | None = None) -> dict:
    return {"source": "s", "group": group or f"g{i}", "messages": [
        {"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def test_1000_good_and_10_bad_rows(tmp_path):
    bad = ['{"source": ', json.dumps({"source": "s", "group": "g", "messages": []}),
           json.dumps({**_record(0), "messages": [{"role": "robot", "content": "x"}]}),
           json.dumps({"source": "s", "group": "g", "text": 5}), "[1, 2]"] * 2
    rows = [_record(i) for i in range(1000)]
    mixed = rows[:500] + bad + rows[500:]
    _write(tmp_path / "a.jsonl", mixed)
    result = prepare_records([tmp_path / "a.jsonl"], seed=1, params=PARAMS)
    assert sum(len(v) for v in result.splits.values()) == 1000
    assert len(result.rejects) == 10
    assert {r["line"] for r in result.rejects} == set(range(501, 511))
    assert result.metrics()["rejected"] == 10


def test_exact_duplicates_removed(tmp_path):
    _write(tmp_path / "a.jsonl", [_record(1), _record(1), _record(2)])
    result = prepare_records([tmp_path / "a.jsonl"], seed=1, params=PARAMS)
    assert result.duplicates == 1


def test_groups_never_straddle_splits_and_adding_data_moves_nothing(tmp_path):
    rows = [_record(i, group=f"dialogue{i // 3}") for i in range(300)]
    _write(tmp_path / "a.jsonl", rows[:200])
    before = prepare_records([tmp_path / "a.jsonl"], seed=1, params=PARAMS)
    _write(tmp_path / "a.jsonl", rows)
    after = prepare_records([tmp_path / "a.jsonl"], seed=1, params=PARAMS)
    where = {r["id"]: split for split, recs in after.splits.items() for r in recs}
    for split, recs in before.splits.items():
        assert all(where[r["id"]] == split for r in recs)
    groups = {}
    for split, recs in after.splits.items():
        for r in recs:
            groups.setdefault(r["group"], set()).add(split)
    assert all(len(s) == 1 for s in groups.values())
    assert all(len(after.splits[s]) > 0 for s in ("train", "val", "test"))


def test_split_fractions_roughly_hold():
    splits = [split_of(f"g{i}", 42, PARAMS) for i in range(5000)]
    assert abs(splits.count("test") / 5000 - 0.2) < 0.03
    assert abs(splits.count("val") / 5000 - 0.1) < 0.03


def test_a_shipped_split_is_kept(tmp_path):
    rows = [{**_record(i), "meta": {"split": "test"}} for i in range(20)]
    _write(tmp_path / "a.jsonl", rows)
    result = prepare_records([tmp_path / "a.jsonl"], seed=1, params=PARAMS)
    assert len(result.splits["test"]) == 20


def test_intent_distribution_counts_user_turns_of_every_split():
    from synthtune.curate.prepare import intent_distribution

    def dialogue(*intents):
        return {"source": "s", "messages": [m for i in intents for m in (
            {"role": "user", "content": i, "annotations": {"intent": i}}, {"role": "assistant", "content": "ok"})]}

    splits = {"train": [dialogue("greeting", "search"), dialogue("search")], "val": [dialogue("goodbye")],
              "test": [{"source": "t", "text": "raw text has no turns"}]}
    assert intent_distribution(splits) == [{"intent": "goodbye", "count": 1}, {"intent": "greeting", "count": 1},
                                           {"intent": "search", "count": 2}]


def test_rejects_are_counted_by_stable_code_not_by_message(tmp_path):
    from synthtune.core.records import REJECT_CODES

    bad = ['{"source": ', json.dumps({"source": "s", "group": "g", "messages": []}),
           json.dumps({**_record(0), "messages": [{"role": "robot", "content": "x"}]}),
           json.dumps({"source": "s", "group": "g", "text": 5}), "[1, 2]", json.dumps({**_record(1), "item": 5})]
    _write(tmp_path / "a.jsonl", [_record(i) for i in range(3)] + bad)
    (tmp_path / "b.jsonl").write_bytes(b'{"source": "\xff"}\n')
    load_rejects = [{"file": "data/x.csv", "line": 4, "code": "column_count", "reason": "expected 2 columns, got 1"},
                    {"file": "data/old.jsonl", "line": 2, "reason": "item 5: field 'output' must be a string"}]
    result = prepare_records([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], seed=1, params=PARAMS,
                             load_rejects=load_rejects)
    by_line = {(r["file"], r["line"]): r.get("code") for r in result.rejects}
    assert by_line == {
        ("data/x.csv", 4): "column_count", ("data/old.jsonl", 2): None,      # written before codes existed
        (str(tmp_path / "a.jsonl"), 4): "malformed_json", (str(tmp_path / "a.jsonl"), 5): "empty_field",
        (str(tmp_path / "a.jsonl"), 6): "unknown_role", (str(tmp_path / "a.jsonl"), 7): "wrong_type",
        (str(tmp_path / "a.jsonl"), 8): "wrong_type", (str(tmp_path / "a.jsonl"), 9): "unknown_field",
        (str(tmp_path / "b.jsonl"), 1): "invalid_utf8"}
    assert all(r["reason"] for r in result.rejects)                 # the full message stays in `reason`
    metrics = result.metrics()
    counts = {k: v for k, v in metrics.items() if k.startswith("rejected.")}
    assert set(counts) == {f"rejected.{code}" for code in REJECT_CODES} | {"rejected.other"}   # same keys every run
    assert {k: v for k, v in counts.items() if v} == {
        "rejected.column_count": 1, "rejected.malformed_json": 1, "rejected.empty_field": 1,
        "rejected.unknown_role": 1, "rejected.wrong_type": 2, "rejected.unknown_field": 1,
        "rejected.invalid_utf8": 1, "rejected.other": 1}
    assert metrics["rejected"] == sum(counts.values()) == 9
    assert not any(k.startswith("rejected_") for k in metrics)       # no message-text keys


def test_metrics_keys_do_not_depend_on_which_rows_failed(tmp_path):
    _write(tmp_path / "a.jsonl", [_record(0), "[1]"])
    _write(tmp_path / "b.jsonl", [_record(0), '{"x": '])
    keys = [set(prepare_records([tmp_path / f], seed=1, params=PARAMS).metrics()) for f in ("a.jsonl", "b.jsonl")]
    assert keys[0] == keys[1]
