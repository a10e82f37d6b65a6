"""What every loader shares: the LOADERS registry, `load_source`, the row builder, row iteration.

A loader is one module of this package holding one function registered with `register_loader`:

    @register_loader("csv", mapping={"prompt": "prompt", "group": None}, options={"delimiter": ","})
    def load_csv(path, rows, mapping, options, explicit) -> None: ...

`mapping` and `options` are the kind's allowed keys with their defaults (`load_source` refuses any
other key); the function gets them resolved, plus `explicit` (the mapping as the user wrote it),
and reports through `rows` (a RowBuilder): `rows.add(where, messages=... | text=...)` validates and
keeps a record, `rows.reject(where, reason, code)` refuses a row (`code`: one of
synthtune.core.records.REJECT_CODES; a loader that gives none gets `invalid_row`), `rows.skip(reason)`
counts valid data left out on purpose. A `RowError(message, code)` raised while converting a row
is that row's reject. `where` is the row's file line, or a `Where` when the row is also (or only)
numbered otherwise: a JSON array item, a dataset row.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.core.config import use_loader_kinds
from synthtune.core.errors import InputError
from synthtune.core.io import BOM, iter_jsonl_lines, require_file
from synthtune.core.records import REJECT_CODES, Problem, record_id, validate_record


@dataclass
class Loaded:
    records: list[dict] = field(default_factory=list)   # canonical, validated, "id" set
    rejects: list[dict] = field(default_factory=list)   # {"file", "line", "code", "reason"[, "item" | "row"]}
    skipped: int = 0                                     # valid data deliberately left out (OASST filters)
    skipped_by: dict[str, int] = field(default_factory=dict)  # reason -> count, sums to `skipped`


class RowError(Exception):
    """A per-row problem; its message becomes the reject reason, `code` the reject code."""

    def __init__(self, message: str, code: str = "invalid_row"):
        if code not in REJECT_CODES:
            raise ValueError(f"unknown reject code {code!r} (add it to REJECT_CODES)")
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Where:
    """Where a row is: `line`, the line of its file where it starts (None: it has no file line, e.g.
    a parquet row), and its number as a JSON array `item` or a dataset `row` (1-based)."""
    line: int | None
    item: int | None = None
    row: int | None = None
    split: str | None = None      # the QA JSON split holding the item (reasons say "train item 3")

    @property
    def prefix(self) -> str:
        """How a reason names the row when its line alone does not."""
        if self.item is not None:
            return f"{self.split + ' ' if self.split else ''}item {self.item}: "
        return f"row {self.row}: " if self.row is not None else ""

    def fields(self) -> dict:
        out: dict = {"line": self.line}
        if self.item is not None:
            out["item"] = self.item
        if self.row is not None:
            out["row"] = self.row
        return out


# ---------------------------------------------------------------- the registry

LoadFn = Callable[[Path | None, "RowBuilder", dict, dict, dict], None]


@dataclass(frozen=True)
class Loader:
    kind: str
    load: LoadFn                                   # (path, rows, mapping, options, explicit) -> None
    mapping: dict[str, str | None]                 # allowed mapping keys -> default field name
    options: dict[str, Any]                        # allowed option keys -> default value
    needs_file: bool = True                        # False: `path` may be None or absent (hf datasets)


LOADERS: dict[str, Loader] = {}
use_loader_kinds(LOADERS)     # params check a loader source's `kind` against this registry


def register_loader(kind: str, *, mapping: dict[str, str | None] | None = None,
                    options: dict[str, Any] | None = None, needs_file: bool = True):
    """Decorator: register `fn(path, rows, mapping, options, explicit)` as the loader of `kind`.
    A kind is registered once; registering the same function again (a module reload) replaces it."""
    def decorate(fn: LoadFn) -> LoadFn:
        old = LOADERS.get(kind)
        if old is not None and (old.load.__module__, old.load.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"loader kind {kind!r} is already registered by {old.load.__module__}")
        LOADERS[kind] = Loader(kind, fn, dict(mapping or {}), dict(options or {}), needs_file)
        return fn
    return decorate


def _resolve(kind: str, given: dict | None, defaults: dict, what: str) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise InputError(f"loader '{kind}': unknown {what} key(s) {', '.join(unknown)} (allowed: {allowed})")
    return {**defaults, **given}


def load_source(kind: str, path: Path | None, *, source: str, domain: str = "general",
                mapping: dict[str, str] | None = None, options: dict | None = None,
                repo_root: str | os.PathLike | None = None) -> Loaded:
    """Load one input file of format `kind` into canonical records plus per-row rejects.

    mapping: format field name overrides (keys per kind: `LOADERS[kind].mapping`; "group" names a
    field whose value becomes the split group). options: per-kind settings (`LOADERS[kind].options`).
    repo_root: when given, a file that resolves outside it is refused (`sources.<source>.path: ...
    outside the repository`); the generate stage passes its working directory (the repository, where
    DVC runs stages) unless the source sets `allow_outside_repo: true`. None: any path (library use).
    """
    loader = LOADERS.get(kind)
    if loader is None:
        raise InputError(f"unknown loader kind {kind!r} (known: {', '.join(LOADERS)})")
    if not isinstance(source, str) or not source:
        raise InputError(f"loader '{kind}': source must be a non-empty string")
    if not isinstance(domain, str):
        raise InputError(f"loader '{kind}': domain must be a string")
    explicit = dict(mapping or {})
    mapping = _resolve(kind, mapping, loader.mapping, "mapping")
    options = _resolve(kind, options, loader.options, "options")
    if loader.needs_file:
        rows = RowBuilder("", source, domain, repo_root)
        rows.check_inside_repo(path, "path")       # first: say nothing about what exists out there
        path = require_file(path)
        rows.file = str(path)
    else:
        path = Path(path) if path is not None else None
        rows = RowBuilder("", source, domain, repo_root)
    loader.load(path, rows, mapping, options, explicit)
    return rows.out


# ---------------------------------------------------------------- field helpers

def short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def one_line(reason: Any, limit: int = 300) -> str:
    reason = " ".join(str(reason).split())
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def need_str(row: dict, key: str, label: str) -> str:
    if key not in row or row[key] is None:
        raise RowError(f"missing {label} field '{key}'" if label != key else f"missing field '{key}'", "missing_field")
    value = row[key]
    if not isinstance(value, str):
        raise RowError(f"field '{key}' must be a string, got {type_name(value)}", "wrong_type")
    if not value.strip():
        raise RowError(f"field '{key}' is empty", "empty_field")
    return value


def opt_str(row: dict, key: str | None) -> str:
    if key is None or row.get(key) is None:
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise RowError(f"field '{key}' must be a string, got {type_name(value)}", "wrong_type")
    return value


def group_value(row: dict, key: str | None) -> str | None:
    if key is None:
        return None
    value = row.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        code = "missing_field" if value is None else "empty_field" if isinstance(value, str) else "wrong_type"
        raise RowError(f"group field '{key}' must be a non-empty string or integer, got {short(value)}", code)
    return str(value)


# ---------------------------------------------------------------- the row builder

class RowBuilder:
    """Collects records and rejects for one input file, and refuses files outside the repository."""

    def __init__(self, path: Path | str | None, source: str, domain: str,
                 repo_root: str | os.PathLike | None = None):
        self.file, self.source, self.domain = str(path or ""), source, domain
        self.repo_root = repo_root
        self.out = Loaded()

    def check_inside_repo(self, path: str | os.PathLike | None, key: str) -> None:
        """Refuse `path` (the params key `sources.<source>.<key>`) when it lies outside `repo_root`.

        Lexical (`os.path.abspath` folds `..`), not `resolve()`: a symlink inside the repository is
        the user's own doing, and DVC's symlink cache links point into a cache folder that may be
        anywhere; what this catches is a path that walks out of the repository (`../../etc/passwd`,
        `/home/...`), which DVC would then track as an outside dependency."""
        if self.repo_root is None or path is None:
            return
        root = os.path.abspath(self.repo_root)
        target = os.path.abspath(path)
        try:
            inside = os.path.commonpath([root, target]) == root
        except ValueError:                            # another drive (Windows)
            inside = False
        if not inside:
            raise InputError(f"sources.{self.source}.{key}: {str(path)!r} is outside the repository ({root}); "
                             f"set sources.{self.source}.allow_outside_repo: true to read it")

    def reject(self, where: int | Where | None, reason: str, code: str | None = None) -> None:
        """Quarantine one row. `code` (one of REJECT_CODES) defaults to the reason's own (a Problem),
        else `invalid_row` (loaders registered elsewhere, written before codes); a code that is not
        in REJECT_CODES is a bug in the loader, not a row problem."""
        where = where if isinstance(where, Where) else Where(where)
        code = code if code is not None else getattr(reason, "code", "invalid_row")
        if code not in REJECT_CODES:
            raise ValueError(f"reject code {code!r} is not one of REJECT_CODES (reason: {reason})")
        self.out.rejects.append({"file": self.file, **where.fields(), "code": code,
                                 "reason": one_line(where.prefix + reason)})

    def skip(self, reason: str, n: int = 1) -> None:
        """Count `n` pieces of valid data left out on purpose (OASST: conversations), by reason."""
        self.out.skipped += n
        self.out.skipped_by[reason] = self.out.skipped_by.get(reason, 0) + n

    def add(self, where: int | Where, *, messages: list[dict] | None = None, text: str | None = None,
            group: str | None = None, meta: dict | None = None, prompt_only: bool = False) -> dict | None:
        where = where if isinstance(where, Where) else Where(where)
        record: dict = {"source": self.source, "domain": self.domain}
        if messages is not None:
            record["messages"] = messages
        else:
            record["text"] = text
        record["id"] = record_id(record)
        record["group"] = f"{self.source}:{group if group is not None else record['id']}"
        record["meta"] = {"file": self.file, **where.fields(), **(meta or {})}
        if prompt_only:
            record["meta"]["prompt_only"] = True
        problem = validate_record(record)
        if problem is not None:
            self.reject(where, problem)
            return None
        self.out.records.append(record)
        return record


# ---------------------------------------------------------------- JSON arrays, item by item

_WS = re.compile(r"[ \t\n\r]*")          # JSON's whitespace (json.decoder.WHITESPACE)
_DECODER = json.JSONDecoder()


def skip_ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()


class LineCounter:
    """The 1-based line of increasing offsets into one text (counted once, incrementally)."""

    def __init__(self, text: str):
        self.text, self.offset, self.line = text, 0, 1

    def at(self, offset: int) -> int:
        self.line += self.text.count("\n", self.offset, offset)
        self.offset = offset
        return self.line


def json_array_items(text: str, pos: int) -> tuple[list[tuple[int, Any]], int]:
    """The items of the JSON array starting at `text[pos]` (a '[') as (offset where the item starts,
    value), and the offset after the closing ']'. Each item is decoded on its own by the json
    module's (C) decoder, so it keeps its place in the file; errors are `json.JSONDecodeError`s with
    absolute positions, as from `json.loads`."""
    items: list[tuple[int, Any]] = []
    pos = skip_ws(text, pos + 1)
    if text.startswith("]", pos):
        return items, pos + 1
    while True:
        value, end = _DECODER.raw_decode(text, pos)
        items.append((pos, value))
        pos = skip_ws(text, end)
        if text.startswith("]", pos):
            return items, pos + 1
        if not text.startswith(",", pos):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        pos = skip_ws(text, pos + 1)


def json_object_members(text: str, pos: int,
                        value: Callable[[str, int], tuple[Any, int]]) -> tuple[dict[str, Any], int]:
    """The members of the JSON object starting at `text[pos]` (a '{'), each value read by
    `value(text, offset) -> (value, end)`, and the offset after the closing '}'. A repeated key
    keeps its last value, as in `json.loads`."""
    members: dict[str, Any] = {}
    pos = skip_ws(text, pos + 1)
    if text.startswith("}", pos):
        return members, pos + 1
    while True:
        if not text.startswith('"', pos):
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
        key, pos = _DECODER.raw_decode(text, pos)
        pos = skip_ws(text, pos)
        if not text.startswith(":", pos):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, pos)
        members[key], pos = value(text, skip_ws(text, pos + 1))
        pos = skip_ws(text, pos)
        if text.startswith("}", pos):
            return members, pos + 1
        if not text.startswith(",", pos):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
        pos = skip_ws(text, pos + 1)


def expect_end(text: str, pos: int) -> None:
    """Only whitespace may follow the top-level value."""
    pos = skip_ws(text, pos)
    if pos != len(text):
        raise json.JSONDecodeError("Extra data", text, pos)


def json_error(path: Path, exc: UnicodeDecodeError | json.JSONDecodeError, what: str = "invalid JSON") -> InputError:
    """One line for a file that cannot be parsed as a whole; it says where, never what is there
    (the file may not be what the user meant to read)."""
    where = (f"invalid UTF-8 at byte {exc.start}" if isinstance(exc, UnicodeDecodeError)
             else f"{what}: {exc.msg} (line {exc.lineno}, column {exc.colno})")
    return InputError(f"{path}: {where}")


# ---------------------------------------------------------------- row iteration

def _first_line_is_json(path: Path) -> bool:
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                try:
                    json.loads(raw.decode("utf-8-sig"))
                    return True
                except (UnicodeDecodeError, json.JSONDecodeError):
                    return False
    return False


def iter_rows(path: Path) -> Iterator[tuple[Where, Any, Problem | None]]:
    """Yield (where, obj, error) from a JSONL file (where = its line) or a JSON array (where = the
    line the item starts on, and its item number)."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(BOM).lstrip(b" \t\r\n")
    if not head.startswith(b"["):
        for lineno, obj, error in iter_jsonl_lines(path):
            yield Where(lineno), obj, error
        return
    try:
        text = path.read_bytes().decode("utf-8-sig")
        start = skip_ws(text, 0)
        items, end = json_array_items(text, start)
        expect_end(text, end)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if _first_line_is_json(path):                  # JSONL whose first row happens to be a list
            for lineno, obj, error in iter_jsonl_lines(path):
                yield Where(lineno), obj, error
            return
        raise json_error(path, exc, "invalid JSON array") from None
    lines = LineCounter(text)
    for index, (offset, obj) in enumerate(items):
        yield Where(lines.at(offset), item=index + 1), obj, None


def iter_objects(path: Path, rows: RowBuilder) -> Iterator[tuple[Where, dict]]:
    """The JSON objects of a JSONL file or JSON array as (where, object); a row that is not valid
    JSON or not an object is quarantined with its reason."""
    for where, obj, error in iter_rows(path):
        if error is not None:
            rows.reject(where, error)
        elif not isinstance(obj, dict):
            rows.reject(where, f"expected a JSON object, got {type_name(obj)}", "wrong_type")
        else:
            yield where, obj


def add_converted(rows: RowBuilder, items: Iterable[tuple[Where, dict]], mapping: dict,
                  convert: Callable[[dict, dict], list[dict] | str], meta: dict | None = None) -> None:
    """One record per (where, object): `convert(obj, mapping)` gives its messages (a list) or its
    text (a str), the mapping's `group` field, if any, its group; a RowError rejects the row."""
    for where, obj in items:
        try:
            body = convert(obj, mapping)
            group = group_value(obj, mapping.get("group"))
        except RowError as exc:
            rows.reject(where, str(exc), exc.code)
            continue
        extra = dict(meta) if meta else None
        if isinstance(body, str):
            rows.add(where, text=body, group=group, meta=extra)
        else:
            rows.add(where, messages=body, group=group, meta=extra)


def load_object_rows(path: Path, rows: RowBuilder, mapping: dict,
                     convert: Callable[[dict, dict], list[dict] | str]) -> None:
    """One record per JSON object of a JSONL file or JSON array (see add_converted)."""
    add_converted(rows, iter_objects(path, rows), mapping, convert)
