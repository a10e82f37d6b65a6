"""Loaders for user datasets: turn one input file of a known format into canonical records.

    load_source(kind, path, source=..., domain=..., mapping=..., options=...) -> Loaded

Kinds: alpaca, qa_json, chat, text, oasst, csv, hf (see `KINDS`). A missing or empty file, an
unknown kind, an unknown mapping/options key or a file that cannot be parsed as a whole is an
`InputError`; a bad row is a reject `{"file", "line", "reason"}` and never costs a good row.
JSON arrays (and QA JSON splits) report `line` = item index + 1 and say "item N" in the reason;
HF datasets report `line` = row index + 1 and say "row N".

Every record passes `synthtune.core.records.validate_record` and its `id` is `record_id(record)`. `group`
is the leak-free split key: `f"{source}:{record_id}"` (each row its own group) unless the mapping
names a `group` field (then `f"{source}:{row[field]}"`); all paths of one OASST tree share
`f"{source}:{message_tree_id}"`.

Prompt-only CSV rows (no response column) are records with `messages=[user]` and
`meta["prompt_only"] = True`, which the validator accepts without an assistant turn; the format
stage leaves them out of training (they are evaluation prompts).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.core.errors import InputError
from synthtune.core.io import iter_jsonl_lines, require_file
from synthtune.core.records import ROLES, record_id, validate_record

KINDS = ("alpaca", "qa_json", "chat", "text", "oasst", "csv", "hf")

# mapping key -> default field name, per kind ("group" defaults to None: each row its own group)
_ALPACA_FIELDS = {"instruction": "instruction", "input": "input", "output": "output", "system": "system"}
_MAPPING_DEFAULTS: dict[str, dict[str, str | None]] = {
    "alpaca": {**_ALPACA_FIELDS, "group": None},
    "qa_json": {"question": "Question", "answer": "Answer", "group": None},
    "chat": {"messages": "messages", "group": None},
    "text": {"content": "content", "group": None},
    "oasst": {},
    "csv": {"prompt": "prompt", "response": "response", "system": "system", "group": None},
    "hf": {**_ALPACA_FIELDS, "messages": "messages", "group": None},
}
_OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "alpaca": {}, "qa_json": {}, "chat": {}, "text": {},
    "oasst": {"lang": "en", "min_messages": 4},
    "csv": {"delimiter": ","},
    "hf": {"dataset": None, "config": None, "split": "train", "data_files": None, "cache_dir": None},
}
_SPLIT_NAMES = {"train": "train", "test": "test", "validation": "val", "valid": "val", "val": "val",
                "dev": "val"}
_LOCAL_HF_BUILDERS = ("json", "parquet", "csv", "text")
_OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


@dataclass
class Loaded:
    records: list[dict] = field(default_factory=list)   # canonical, validated, "id" set
    rejects: list[dict] = field(default_factory=list)   # {"file", "line", "reason"}, one per bad row
    skipped: int = 0                                     # valid data deliberately left out (OASST filters)
    skipped_by: dict[str, int] = field(default_factory=dict)  # reason -> count, sums to `skipped`


class _RowError(Exception):
    """A per-row problem; its message becomes the reject reason."""


# ---------------------------------------------------------------- helpers

def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _one_line(reason: str, limit: int = 300) -> str:
    reason = " ".join(str(reason).split())
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _need_str(row: dict, key: str, label: str) -> str:
    if key not in row or row[key] is None:
        raise _RowError(f"missing {label} field '{key}'" if label != key else f"missing field '{key}'")
    value = row[key]
    if not isinstance(value, str):
        raise _RowError(f"field '{key}' must be a string, got {_type_name(value)}")
    if not value.strip():
        raise _RowError(f"field '{key}' is empty")
    return value


def _opt_str(row: dict, key: str | None) -> str:
    if key is None or row.get(key) is None:
        return ""
    value = row[key]
    if not isinstance(value, str):
        raise _RowError(f"field '{key}' must be a string, got {_type_name(value)}")
    return value


def _group_value(row: dict, key: str | None) -> str | None:
    if key is None:
        return None
    value = row.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise _RowError(f"group field '{key}' must be a non-empty string or integer, got {_short(value)}")
    return str(value)


def _resolve(kind: str, given: dict | None, defaults: dict, what: str) -> dict:
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(sorted(defaults)) or "none"
        raise InputError(f"loader '{kind}': unknown {what} key(s) {', '.join(unknown)} (allowed: {allowed})")
    return {**defaults, **given}


class _Builder:
    """Collects records and rejects for one input file."""

    def __init__(self, path: Path | str, source: str, domain: str):
        self.file, self.source, self.domain = str(path), source, domain
        self.out = Loaded()

    def reject(self, line: int, reason: str) -> None:
        self.out.rejects.append({"file": self.file, "line": line, "reason": _one_line(reason)})

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


def _iter_rows(path: Path):
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


# ---------------------------------------------------------------- row converters (shared with hf)

def alpaca_messages(row: dict, mapping: dict) -> list[dict]:
    """instruction (+ "\\n\\n" + input when non-empty) -> user, output -> assistant; optional system."""
    instruction = _need_str(row, mapping["instruction"], "instruction")
    extra = _opt_str(row, mapping.get("input"))
    output = _need_str(row, mapping["output"], "output")
    system = _opt_str(row, mapping.get("system"))
    user = instruction + ("\n\n" + extra if extra.strip() else "")
    messages = [{"role": "system", "content": system}] if system.strip() else []
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


def chat_messages(row: dict, mapping: dict) -> list[dict]:
    key = mapping["messages"]
    messages = row.get(key)
    if messages is None:
        raise _RowError(f"missing field '{key}'")
    if not isinstance(messages, list):
        raise _RowError(f"field '{key}' must be a list, got {_type_name(messages)}")
    if not messages:
        raise _RowError(f"field '{key}' is empty")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _RowError(f"{key}[{index}] must be an object, got {_type_name(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise _RowError(f"{key}[{index}]: unknown role {_short(role)} (allowed: {'/'.join(ROLES)})")
        content = message.get("content")
        if not isinstance(content, str):
            raise _RowError(f"{key}[{index}].content must be a string, got {_type_name(content)}")
        if not content.strip():
            raise _RowError(f"{key}[{index}].content is empty")
        item = {"role": role, "content": content}
        if isinstance(message.get("annotations"), dict):
            item["annotations"] = message["annotations"]
        out.append(item)
    return out


# ---------------------------------------------------------------- formats

def _load_jsonl_like(path: Path, b: _Builder, mapping: dict, convert) -> None:
    for line, obj, error, prefix in _iter_rows(path):
        if error is not None:
            b.reject(line, prefix + error)
            continue
        if not isinstance(obj, dict):
            b.reject(line, f"{prefix}expected a JSON object, got {_type_name(obj)}")
            continue
        try:
            body = convert(obj, mapping)
            group = _group_value(obj, mapping.get("group"))
        except _RowError as exc:
            b.reject(line, prefix + str(exc))
            continue
        if isinstance(body, str):
            b.add(line, text=body, group=group, prefix=prefix)
        else:
            b.add(line, messages=body, group=group, prefix=prefix)


def _text_body(row: dict, mapping: dict) -> str:
    return _need_str(row, mapping["content"], "content")


def _load_qa_json(path: Path, b: _Builder, mapping: dict) -> None:
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
            parts.append((_SPLIT_NAMES.get(key.lower(), key.lower()), items))
    else:
        raise InputError(f"{path}: expected an object of splits (train/test/...) or a list")
    for split, items in parts:
        for index, item in enumerate(items):
            prefix = f"{split + ' ' if split else ''}item {index + 1}: "
            if not isinstance(item, dict):
                b.reject(index + 1, f"{prefix}expected an object, got {_type_name(item)}")
                continue
            try:
                question = _need_str(item, mapping["question"], "question")
                answer = _need_str(item, mapping["answer"], "answer")
                group = _group_value(item, mapping.get("group"))
            except _RowError as exc:
                b.reject(index + 1, prefix + str(exc))
                continue
            meta = {"split": split} if split else {}
            b.add(index + 1, messages=[{"role": "user", "content": question},
                                       {"role": "assistant", "content": answer}],
                  group=group, meta=meta, prefix=prefix)


def _oasst_paths(root: dict) -> list[list[dict]]:
    """Validate a tree and return every root-to-leaf path (iterative: deep trees do not recurse)."""
    paths, stack = [], [(root, "prompt", [])]
    while stack:
        node, where, prefix = stack.pop()
        if not isinstance(node, dict):
            raise _RowError(f"{where} must be an object, got {_type_name(node)}")
        role = node.get("role")
        if role not in _OASST_ROLES:
            raise _RowError(f"{where}: unknown role {_short(role)} (allowed: prompter/assistant)")
        text = node.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _RowError(f"{where}.text must be a non-empty string")
        replies = node.get("replies") or []
        if not isinstance(replies, list):
            raise _RowError(f"{where}.replies must be a list, got {_type_name(replies)}")
        path = prefix + [node]
        if not replies:
            paths.append(path)
        for index in range(len(replies) - 1, -1, -1):   # reversed push keeps left-to-right order
            stack.append((replies[index], f"{where}.replies[{index}]", path))
    return paths


def _load_oasst(path: Path, b: _Builder, options: dict) -> None:
    lang, min_messages = options["lang"], options["min_messages"]
    if not isinstance(min_messages, int) or isinstance(min_messages, bool) or min_messages < 1:
        raise InputError(f"loader 'oasst': option min_messages must be an integer >= 1, got {min_messages!r}")
    if lang is not None and not isinstance(lang, str):
        raise InputError(f"loader 'oasst': option lang must be a string or null, got {lang!r}")
    for line, obj, error, prefix in _iter_rows(path):
        if error is not None:
            b.reject(line, prefix + error)
            continue
        if not isinstance(obj, dict):
            b.reject(line, f"{prefix}expected a JSON object, got {_type_name(obj)}")
            continue
        tree_id = obj.get("message_tree_id")
        if not isinstance(tree_id, (str, int)) or isinstance(tree_id, bool) or str(tree_id) == "":
            b.reject(line, f"{prefix}missing or invalid message_tree_id")
            continue
        try:
            paths = _oasst_paths(obj.get("prompt"))
        except _RowError as exc:
            b.reject(line, prefix + str(exc))
            continue
        seen: set[str] = set()
        for path_nodes in paths:
            if lang is not None and any(node.get("lang") != lang for node in path_nodes):
                b.skip("lang")
                continue
            if path_nodes[-1]["role"] == "prompter":
                path_nodes = path_nodes[:-1]          # a trailing user turn has no reply to learn from
            if len(path_nodes) < min_messages or not path_nodes:
                b.skip("min_messages")
                continue
            messages = [{"role": _OASST_ROLES[n["role"]], "content": n["text"]} for n in path_nodes]
            key = json.dumps(messages, sort_keys=True)
            if key in seen:                            # two leaves differing only by a dropped user turn
                b.skip("duplicate_path")
                continue
            seen.add(key)
            meta = {"tree_id": str(tree_id)}
            if lang is not None:
                meta["lang"] = lang
            if path_nodes[-1].get("message_id") is not None:
                meta["leaf_message_id"] = str(path_nodes[-1]["message_id"])
            b.add(line, messages=messages, group=str(tree_id), meta=meta, prefix=prefix)


def to_seq2seq(record: dict) -> dict:
    """{"input": history rendered as "<Role user>..."/"<Role bot>..." lines, "output": last assistant reply}."""
    messages = record.get("messages") or []
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("to_seq2seq needs a chat record whose last message is an assistant reply")
    tags = {"user": "user", "assistant": "bot", "system": "system"}
    history = "\n".join(f"<Role {tags[m['role']]}>{m['content']}" for m in messages[:-1])
    return {"input": history, "output": messages[-1]["content"]}


def _load_csv(path: Path, b: _Builder, mapping: dict, options: dict, explicit: dict) -> None:
    # Decode leniently so one bad byte costs one row, not the file; such rows are rejected below.
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    old_limit = csv.field_size_limit(2**31 - 1)         # a 10 MB cell is a row, not a crash
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=options["delimiter"])
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: CSV has no header row") from None
        header = [h.strip() for h in header]
        columns = {name: i for i, name in enumerate(header)}
        for key in ("prompt", "response", "system", "group"):
            col = mapping.get(key)
            if col is not None and col not in columns and (key in explicit or key == "prompt"):
                raise InputError(f"{path}: column '{col}' (mapping '{key}') not in header {header}")
        prompt_only = mapping["response"] not in columns
        last_line = reader.line_num
        while True:
            start = last_line + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                last_line = reader.line_num
                b.reject(start, f"malformed CSV: {exc}")
                continue
            last_line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if any("\udc80" <= ch <= "\udcff" for c in cells for ch in c):
                b.reject(start, "invalid UTF-8")
                continue
            if len(cells) != len(header):
                b.reject(start, f"expected {len(header)} columns, got {len(cells)}")
                continue
            row = {name: cells[i] for name, i in columns.items()}
            try:
                user = _need_str(row, mapping["prompt"], "prompt")
                messages = []
                system = _opt_str(row, mapping.get("system") if mapping.get("system") in columns else None)
                if system.strip():
                    messages.append({"role": "system", "content": system})
                messages.append({"role": "user", "content": user})
                if not prompt_only:
                    messages.append({"role": "assistant", "content": _need_str(row, mapping["response"], "response")})
                group = _group_value(row, mapping.get("group"))
            except _RowError as exc:
                b.reject(start, str(exc))
                continue
            b.add(start, messages=messages, group=group, prompt_only=prompt_only)
    finally:
        csv.field_size_limit(old_limit)


def _load_hf(path: Path | None, b: _Builder, mapping: dict, options: dict, explicit: dict) -> None:
    dataset = options["dataset"]
    if not isinstance(dataset, str) or not dataset:
        raise InputError("loader 'hf': option 'dataset' is required (json, parquet, csv or a hub id)")
    data_files = options["data_files"]
    if dataset in _LOCAL_HF_BUILDERS:
        data_files = data_files if data_files is not None else path
        if data_files is None:
            raise InputError(f"loader 'hf': dataset '{dataset}' needs a path or option data_files")
        data_files = str(require_file(data_files))
    b.file = str(data_files) if data_files is not None else dataset
    import datasets  # slow import: only when this loader is used

    kwargs = {"split": options["split"]}
    if data_files is not None:
        kwargs["data_files"] = str(data_files)
    if options["cache_dir"] is not None:
        kwargs["cache_dir"] = str(options["cache_dir"])
    try:
        ds = datasets.load_dataset(dataset, options["config"], **kwargs)
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's input problem
        raise InputError(f"{data_files or dataset}: cannot load dataset: {_one_line(exc)}") from None
    chat = "messages" in explicit or ("messages" in ds.column_names and "instruction" not in explicit
                                      and mapping["instruction"] not in ds.column_names)
    convert = chat_messages if chat else alpaca_messages
    base_meta = {"dataset": dataset, "split": options["split"]}
    if options["config"] is not None:
        base_meta["config"] = options["config"]
    for index, row in enumerate(ds):
        prefix = f"row {index + 1}: "
        try:
            messages = convert(row, mapping)
            group = _group_value(row, mapping.get("group"))
        except _RowError as exc:
            b.reject(index + 1, prefix + str(exc))
            continue
        b.add(index + 1, messages=messages, group=group, meta=dict(base_meta), prefix=prefix)


# ---------------------------------------------------------------- entry point

def load_source(kind: str, path: Path, *, source: str, domain: str = "general",
                mapping: dict[str, str] | None = None, options: dict | None = None) -> Loaded:
    """Load one input file of format `kind` into canonical records plus per-row rejects.

    mapping: format field name overrides (keys per kind in `_MAPPING_DEFAULTS`; "group" names a
    field whose value becomes the split group). options: per-kind settings (`_OPTION_DEFAULTS`).
    """
    if kind not in KINDS:
        raise InputError(f"unknown loader kind {kind!r} (known: {', '.join(KINDS)})")
    if not isinstance(source, str) or not source:
        raise InputError(f"loader '{kind}': source must be a non-empty string")
    if not isinstance(domain, str):
        raise InputError(f"loader '{kind}': domain must be a string")
    explicit = dict(mapping or {})
    mapping = _resolve(kind, mapping, _MAPPING_DEFAULTS[kind], "mapping")
    options = _resolve(kind, options, _OPTION_DEFAULTS[kind], "options")
    if kind == "hf":
        b = _Builder("", source, domain)
        _load_hf(Path(path) if path is not None else None, b, mapping, options, explicit)
        return b.out
    path = require_file(path)
    b = _Builder(path, source, domain)
    if kind == "alpaca":
        _load_jsonl_like(path, b, mapping, alpaca_messages)
    elif kind == "chat":
        _load_jsonl_like(path, b, mapping, chat_messages)
    elif kind == "text":
        _load_jsonl_like(path, b, mapping, _text_body)
    elif kind == "qa_json":
        _load_qa_json(path, b, mapping)
    elif kind == "oasst":
        _load_oasst(path, b, options)
    elif kind == "csv":
        _load_csv(path, b, mapping, options, explicit)
    return b.out
