"""Loaders for user datasets: turn one input file of a known format into canonical records.

    load_source(kind, path, source=..., domain=..., mapping=..., options=...) -> Loaded

One module per format (alpaca, qa_json, chat, text, oasst, csv, hf), each registering its loader
in `LOADERS` (kind -> Loader) with `register_loader` (see base.py); every module of this package
is imported here, so a new format is one new file. A missing or empty file, an unknown kind, an
unknown mapping/options key or a file that cannot be parsed as a whole is an `InputError`; a bad
row is a reject `{"file", "line", "code", "reason"}` (`code`: one of
synthtune.core.records.REJECT_CODES) and never costs a good row. `line` is always a line of the
file: for JSON arrays (and QA JSON splits) the line where the item starts, with `item` = item
index + 1 beside it and "item N" in the reason; HF dataset rows have no file line (`line` null,
`row` = row index + 1, "row N" in the reason). Records' `meta` carries the same `line`/`item`/`row`.

Paths: `load_source(..., repo_root=...)` refuses a `path` (or hf `data_files`) outside the
repository with one line naming `sources.<name>.path`; the generate stage passes its working
directory unless the source sets `allow_outside_repo: true`. Reasons never quote the file's
content beyond a field value cut to 40 characters (a wrong `path` must not leak a file into
data/rejected).

Every record passes `synthtune.core.records.validate_record` and its `id` is `record_id(record)`. `group`
is the leak-free split key: `f"{source}:{record_id}"` (each row its own group) unless the mapping
names a `group` field (then `f"{source}:{row[field]}"`); all paths of one OASST tree share
`f"{source}:{message_tree_id}"`.

Prompt-only CSV rows (no response column) are records with `messages=[user]` and
`meta["prompt_only"] = True`, which the validator accepts without an assistant turn; the format
stage leaves them out of training (they are evaluation prompts).
"""
from __future__ import annotations

import importlib
import pkgutil

from synthtune.generate.loaders.base import LOADERS, Loaded, Loader, RowBuilder, RowError, load_source, register_loader

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")   # each format module registers itself

from synthtune.generate.loaders.oasst import to_seq2seq  # noqa: E402

__all__ = ["LOADERS", "Loaded", "Loader", "RowBuilder", "RowError", "load_source", "register_loader", "to_seq2seq"]
