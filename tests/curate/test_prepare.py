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
