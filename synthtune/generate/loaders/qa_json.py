"""QA JSON: a list of {Question, Answer} items, or an object of splits (train/test/validation/...)
of such lists; the split is kept in `meta["split"]`. Rejects and records carry the file `line` where
the item starts and its `item` number within its list; reasons say "<split> item N"."""
from __future__ import annotations

import json
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.generate.loaders.base import (LineCounter, RowBuilder, RowError, Where, expect_end, group_value,
                                             json_array_items, json_error, json_object_members, need_str,
                                             register_loader, skip_ws, type_name)

SPLIT_NAMES = {"train": "train", "test": "test", "validation": "val", "valid": "val", "val": "val", "dev": "val"}
_DECODER = json.JSONDecoder()


def _value(text: str, pos: int):
    """A split's value: a list keeps its items' offsets (("items", [(offset, item)])), anything
    else is decoded whole (("value", obj)) and refused below."""
    if text.startswith("[", pos):
        items, end = json_array_items(text, pos)
        return ("items", items), end
    value, end = _DECODER.raw_decode(text, pos)
    return ("value", value), end


@register_loader("qa_json", mapping={"question": "Question", "answer": "Answer", "group": None})
def load_qa_json(path: Path, rows: RowBuilder, mapping: dict, options: dict, explicit: dict) -> None:
    try:
        text = path.read_bytes().decode("utf-8-sig")
        pos = skip_ws(text, 0)
        if text.startswith("{", pos):
            members, end = json_object_members(text, pos, _value)
        else:
            (shape, value), end = _value(text, pos)
            members = None
        expect_end(text, end)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise json_error(path, exc) from None
    if members is None:
        if shape != "items":
            raise InputError(f"{path}: expected an object of splits (train/test/...) or a list")
        parts = [(None, value)]
    else:
        parts = []
        for key, (shape, items) in members.items():
            if shape != "items":
                raise InputError(f"{path}: split '{key}' must be a list of question/answer items")
            parts.append((SPLIT_NAMES.get(key.lower(), key.lower()), items))
    lines = LineCounter(text)
    # lines are counted once, in file order; items are then read split by split
    starts = sorted((offset, part, index) for part, (_, items) in enumerate(parts)
                    for index, (offset, _) in enumerate(items))
    line_of = {(part, index): lines.at(offset) for offset, part, index in starts}
    for part, (split, items) in enumerate(parts):
        for index, (_, item) in enumerate(items):
            where = Where(line_of[(part, index)], item=index + 1, split=split)
            if not isinstance(item, dict):
                rows.reject(where, f"expected an object, got {type_name(item)}", "wrong_type")
                continue
            try:
                question = need_str(item, mapping["question"], "question")
                answer = need_str(item, mapping["answer"], "answer")
                group = group_value(item, mapping.get("group"))
            except RowError as exc:
                rows.reject(where, str(exc), exc.code)
                continue
            meta = {"split": split} if split else {}
            rows.add(where, messages=[{"role": "user", "content": question},
                                      {"role": "assistant", "content": answer}],
                     group=group, meta=meta)
