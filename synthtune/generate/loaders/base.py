"""What every loader shares: the LOADERS registry, `load_source`, the row builder, row iteration.

A loader is one module of this package holding one function registered with `register_loader`:

    @register_loader("csv", mapping={"prompt": "prompt", "group": None}, options={"delimiter": ","})
    def load_csv(path, rows, mapping, options, explicit) -> None: ...

`mapping` and `options` are the kind's allowed keys with their defaults (`load_source` refuses any
other key); the function gets them resolved, plus `explicit` (the mapping as the user wrote it),
and reports through `rows` (a RowBuilder): `rows.add(line, messages=... | text=...)` validates and
keeps a record, `rows.reject(line, reason)` refuses a row, `rows.skip(reason)` counts valid data
left out on purpose. A `RowError` raised while converting a row is that row's reject reason.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.core.config import use_loader_kinds
from synthtune.core.errors import InputError
from synthtune.core.io import iter_jsonl_lines, require_file
from synthtune.core.records import record_id, validate_record


@dataclass
class Loaded:
    records: list[dict] = field(default_factory=list)   # canonical, validated, "id" set
    rejects: list[dict] = field(default_factory=list)   # {"file", "line", "reason"}, one per bad row
    skipped: int = 0                                     # valid data deliberately left out (OASST filters)
    skipped_by: dict[str, int] = field(default_factory=dict)  # reason -> count, sums to `skipped`


class RowError(Exception):
    """A per-row problem; its message becomes the reject reason."""


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
                mapping: dict[str, str] | None = None, options: dict | None = None) -> Loaded:
    """Load one input file of format `kind` into canonical records plus per-row rejects.

    mapping: format field name overrides (keys per kind: `LOADERS[kind].mapping`; "group" names a
    field whose value becomes the split group). options: per-kind settings (`LOADERS[kind].options`).
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
        path = require_file(path)
        rows = RowBuilder(path, source, domain)
    else:
        path = Path(path) if path is not None else None
        rows = RowBuilder("", source, domain)
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
        raise RowError(f"missing {label} field '{key}'" if label != key else f"missing field '{key}'")
    value = row[key]
    if not isinstance(value, str):
        raise RowError(f"field '{key}' must be a string, got {type_name(value)}")
    if not value.strip():
        raise RowError(f"field '{key}' is empty")
    return value


def opt_str(row: dict, key: str | None) -> str:
    if key is None or row.get(key) is None:
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise RowError(f"field '{key}' must be a string, got {type_name(value)}")
    return value


def group_value(row: dict, key: str | None) -> str | None:
    if key is None:
        return None
    value = row.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise RowError(f"group field '{key}' must be a non-empty string or integer, got {short(value)}")
    return str(value)


# ---------------------------------------------------------------- the row builder

class RowBuilder:
    """Collects records and rejects for one input file."""

    def __init__(self, path: Path | str, source: str, domain: str):
        self.file, self.source, self.domain = str(path), source, domain
        self.out = Loaded()

    def reject(self, line: int, reason: str) -> None:
        self.out.rejects.append({"file": self.file, "line": line, "reason": one_line(reason)})

    def skip(self, reason: str) -> None:
        self.out.skipped += 1
        self.out.skipped_by[reason] = self.out.skipped_by.get(reason, 0) + 1

    def add(self, line: int, *, messages: list[dict] | None = None, text: str | None = None,
            group: str | None = None, meta: dict | None = None, prompt_only: bool = False,
            prefix: str = "") -> dict | None:
        record: dict = {"source": self.source, "domain": self.domain}
        if messages is not None:
            record["messages"] = messages
        else:
            record["text"] = text
        record["id"] = record_id(record)
        record["group"] = f"{self.source}:{group if group is not None else record['id']}"
        record["meta"] = {"file": self.file, "line": line, **(meta or {})}
        if prompt_only:
            record["meta"]["prompt_only"] = True
        reason = validate_record(record)
        if reason is not None:
            self.reject(line, prefix + reason)
            return None
        self.out.records.append(record)
        return record


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


def iter_rows(path: Path) -> Iterator[tuple[int, Any, str | None, str]]:
    """Yield (line, obj, error, prefix) from a JSONL file or a JSON array (line = item index + 1)."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        for lineno, obj, error in iter_jsonl_lines(path):
            yield lineno, obj, error, ""
        return
    try:
        items = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if _first_line_is_json(path):                  # JSONL whose first row happens to be a list
            for lineno, obj, error in iter_jsonl_lines(path):
                yield lineno, obj, error, ""
            return
        where = (f"invalid UTF-8 at byte {exc.start}" if isinstance(exc, UnicodeDecodeError)
                 else f"{exc.msg} (line {exc.lineno}, column {exc.colno})")
        raise InputError(f"{path}: invalid JSON array: {where}") from None
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a JSON array or JSONL")
    for index, obj in enumerate(items):
        yield index + 1, obj, None, f"item {index + 1}: "


def iter_objects(path: Path, rows: RowBuilder) -> Iterator[tuple[int, dict, str]]:
    """The JSON objects of a JSONL file or JSON array as (line, object, prefix); a row that is not
    valid JSON or not an object is quarantined with its reason."""
    for line, obj, error, prefix in iter_rows(path):
        if error is not None:
            rows.reject(line, prefix + error)
        elif not isinstance(obj, dict):
            rows.reject(line, f"{prefix}expected a JSON object, got {type_name(obj)}")
        else:
            yield line, obj, prefix


def load_object_rows(path: Path, rows: RowBuilder, mapping: dict,
                     convert: Callable[[dict, dict], list[dict] | str]) -> None:
    """One record per JSON object of a JSONL file or JSON array: `convert(obj, mapping)` gives its
    messages (a list) or its text (a str); the mapping's `group` field, if any, its group."""
    for line, obj, prefix in iter_objects(path, rows):
        try:
            body = convert(obj, mapping)
            group = group_value(obj, mapping.get("group"))
        except RowError as exc:
            rows.reject(line, prefix + str(exc))
            continue
        if isinstance(body, str):
            rows.add(line, text=body, group=group, prefix=prefix)
        else:
            rows.add(line, messages=body, group=group, prefix=prefix)
