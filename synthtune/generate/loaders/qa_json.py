"""QA JSON: a list of {Question, Answer} items, or an object of splits (train/test/validation/...)
of such lists; the split is kept in `meta["split"]`, and rejects say "<split> item N"."""
from __future__ import annotations

import json
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.generate.loaders.base import RowBuilder, RowError, group_value, need_str, register_loader, type_name

SPLIT_NAMES = {"train": "train", "test": "test", "validation": "val", "valid": "val", "val": "val", "dev": "val"}


@register_loader("qa_json", mapping={"question": "Question", "answer": "Answer", "group": None})
def load_qa_json(path: Path, rows: RowBuilder, mapping: dict, options: dict, explicit: dict) -> None:
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if isinstance(data, list):
        parts = [(None, data)]
    elif isinstance(data, dict):
        parts = []
        for key, items in data.items():
            if not isinstance(items, list):
                raise InputError(f"{path}: split '{key}' must be a list of question/answer items")
            parts.append((SPLIT_NAMES.get(key.lower(), key.lower()), items))
    else:
        raise InputError(f"{path}: expected an object of splits (train/test/...) or a list")
    for split, items in parts:
        for index, item in enumerate(items):
            prefix = f"{split + ' ' if split else ''}item {index + 1}: "
            if not isinstance(item, dict):
                rows.reject(index + 1, f"{prefix}expected an object, got {type_name(item)}")
                continue
            try:
                question = need_str(item, mapping["question"], "question")
                answer = need_str(item, mapping["answer"], "answer")
                group = group_value(item, mapping.get("group"))
            except RowError as exc:
                rows.reject(index + 1, prefix + str(exc))
                continue
            meta = {"split": split} if split else {}
            rows.add(index + 1, messages=[{"role": "user", "content": question},
                                          {"role": "assistant", "content": answer}],
                     group=group, meta=meta, prefix=prefix)
