"""Atomic writes and JSONL readers that report file:line.

Every output is written to a temporary file in the destination folder and renamed into
place, so a killed stage leaves either the previous output or none, never half a file. Outputs
get the mode any new file gets (0666 less the umask, and the folder's default ACL), not the
0600 of `tempfile.mkstemp`: DVC caches and shares them, and other users and tools read them.

Readers accept a UTF-8 byte order mark at the start of a file (Windows tools write one); bad
lines come back with a `Problem` reason whose `.code` is a reject code (synthtune.core.records).
"""
from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from synthtune.core.errors import InputError
from synthtune.core.records import Problem

BOM = b"\xef\xbb\xbf"
# O_EXCL: never open a file someone else made; O_BINARY (Windows): no newline translation below Python
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temp(folder: Path, name: str) -> tuple[int, str]:
    """A new file next to the destination, opened for writing. Unlike mkstemp (always 0600) it is
    created with mode 0666 so the kernel applies the umask and any default ACL, as for open(path,
    "w"); reading the umask from Python is racy (os.umask sets it to read it)."""
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, _TMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free temporary file name for {name}")


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temp file next to `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write one compact JSON object per line (stable key order); returns the row count."""
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def require_file(path: str | os.PathLike, *, allow_empty: bool = False) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if not allow_empty and path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    return path


def iter_jsonl_lines(path: str | os.PathLike, *,
                     allow_empty: bool = False) -> Iterator[tuple[int, Any, Problem | None]]:
    """Yield (line number, parsed object or None, error or None) for each non-blank line.

    Bytes that are not UTF-8 and malformed JSON are reported per line (a `Problem`: its `.code`
    is `invalid_utf8` or `malformed_json`), so callers can quarantine the row and keep going.
    A byte order mark before the first line is not part of the row. The error never quotes the
    line: the file may not be what the user meant to read.
    """
    path = require_file(path, allow_empty=allow_empty)
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, None, Problem(f"invalid UTF-8 at byte {exc.start}", "invalid_utf8")
                continue
            try:
                yield lineno, json.loads(text), None
            except json.JSONDecodeError as exc:
                yield lineno, None, Problem(f"invalid JSON: {exc.msg} (column {exc.colno})", "malformed_json")


def read_jsonl(path: str | os.PathLike, *, allow_empty: bool = False) -> list[dict]:
    """Read a pipeline-internal JSONL file strictly: the first bad line is an error naming file:line."""
    path = require_file(path, allow_empty=allow_empty)
    rows = []
    for lineno, obj, error in iter_jsonl_lines(path, allow_empty=allow_empty):
        if error is not None:
            raise InputError(f"{path}:{lineno}: {error}")
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def read_json(path: str | os.PathLike) -> Any:
    path = require_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))      # -sig: a leading BOM is not JSON
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON: {exc}") from None
