"""CSV with a header row: prompt[, response][, system][, group] columns (names set by `mapping`).

Without the response column every row is a prompt-only record (`messages=[user]`,
`meta["prompt_only"] = True`): evaluation prompts, which the format stage leaves out of training.
Rows are numbered by their first physical line (quoted cells may span lines); one bad byte or a
short row costs that row only. options: `delimiter` (one character, not a quote or line break).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.generate.loaders.base import RowBuilder, RowError, group_value, need_str, opt_str, register_loader, short

HEADER_SHOWN = 10          # header names an error quotes at most, each cut by `short`: the first line of
                           # a file that is no CSV (a wrong `path`) must not be echoed whole


def _delimiter(value: object) -> str:
    # csv.reader raises a bare TypeError for anything but a 1-character string, and takes a quote or a
    # line break as delimiter silently (rows then come out as one cell): both are params mistakes
    if not isinstance(value, str) or len(value) != 1:
        raise InputError(f"loader 'csv': option delimiter must be one character, got {value!r}")
    if value in "\"\r\n":
        raise InputError(f"loader 'csv': option delimiter cannot be a quote or a line break, got {value!r}")
    return value


def _header_text(header: list[str]) -> str:
    names = ", ".join(short(name, 24) for name in header[:HEADER_SHOWN])
    more = f", ... {len(header) - HEADER_SHOWN} more" if len(header) > HEADER_SHOWN else ""
    return f"{len(header)} column(s): {names}{more}"


@register_loader("csv", mapping={"prompt": "prompt", "response": "response", "system": "system", "group": None},
                 options={"delimiter": ","})
def load_csv(path: Path, rows: RowBuilder, mapping: dict, options: dict, explicit: dict) -> None:
    delimiter = _delimiter(options["delimiter"])
    # Decode leniently so one bad byte costs one row, not the file; such rows are rejected below.
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    old_limit = csv.field_size_limit(2**31 - 1)         # a 10 MB cell is a row, not a crash
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(f"{path}: CSV has no header row") from None
        header = [h.strip() for h in header]
        columns = {name: i for i, name in enumerate(header)}
        for key in ("prompt", "response", "system", "group"):
            col = mapping.get(key)
            if col is not None and col not in columns and (key in explicit or key == "prompt"):
                raise InputError(f"{path}: column '{col}' (mapping '{key}') not in the header ({_header_text(header)})")
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
                rows.reject(start, f"malformed CSV: {exc}", "malformed_csv")
                continue
            last_line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if any("\udc80" <= ch <= "\udcff" for c in cells for ch in c):
                rows.reject(start, "invalid UTF-8", "invalid_utf8")
                continue
            if len(cells) != len(header):
                rows.reject(start, f"expected {len(header)} columns, got {len(cells)}", "column_count")
                continue
            row = {name: cells[i] for name, i in columns.items()}
            try:
                user = need_str(row, mapping["prompt"], "prompt")
                messages = []
                system = opt_str(row, mapping.get("system") if mapping.get("system") in columns else None)
                if system.strip():
                    messages.append({"role": "system", "content": system})
                messages.append({"role": "user", "content": user})
                if not prompt_only:
                    messages.append({"role": "assistant", "content": need_str(row, mapping["response"], "response")})
                group = group_value(row, mapping.get("group"))
            except RowError as exc:
                rows.reject(start, str(exc), exc.code)
                continue
            rows.add(start, messages=messages, group=group, prompt_only=prompt_only)
    finally:
        csv.field_size_limit(old_limit)
