"""The one on-disk key -> value cache: teacher answers (JSON) and embedding vectors (bytes).

One SQLite file in WAL mode, one table of (key TEXT PRIMARY KEY, <value column>). The table and
column names are the caller's, so files written before this module existed stay readable as they
are: teacher caches are `responses (key, value TEXT)` of JSON objects, embedding caches
`vectors (key, vector BLOB)` of float32 bytes.

`put` hands the value to a writer thread that commits whatever is queued in one transaction
(group commit): each value is durable within a few milliseconds of arriving and the caller (an
event loop with 32 requests in flight) never waits on the disk. Reads see every committed value;
`flush` waits for the queue. A killed process loses only the values in flight (and at most the few
queued). Safe to share between processes: SQLite's locks, `timeout_s` of waiting for them.
"""
from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.core.errors import InputError

_LOOKUP_CHUNK = 500          # keys per SQLite query (well under its variable limit)


@dataclass(frozen=True)
class Codec:
    """How values are stored: the column's SQLite type and the two conversions."""
    sql_type: str
    encode: Callable[[Any], str | bytes]
    decode: Callable[[Any], Any]


# sort_keys: the same answer is the same bytes on disk, whatever order its fields were built in
JSON = Codec("TEXT", lambda value: json.dumps(value, sort_keys=True, ensure_ascii=False), json.loads)
BYTES = Codec("BLOB", bytes, bytes)


class KeyValueCache:
    """`get`/`get_many`/`put`/`put_many`/`flush`/`close`; `name` only words error messages."""

    def __init__(self, path: str | os.PathLike, *, table: str = "entries", column: str = "value",
                 codec: Codec = JSON, read_only: bool = False, timeout_s: float = 30.0, name: str = "key-value"):
        self.path = Path(path)
        self.table, self.column, self.codec, self.name = table, column, codec, name
        self.read_only, self.timeout_s = read_only, timeout_s
        if read_only:       # a dry run reads what is cached and never creates or changes the file
            self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = self._connect()
            self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                            f"(key TEXT PRIMARY KEY, {column} {codec.sql_type} NOT NULL)")
        self._queue: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")      # survives a killed process; commits without fsync
        return db

    def get(self, key: str) -> Any | None:
        row = self.db.execute(f"SELECT {self.column} FROM {self.table} WHERE key = ?", (key,)).fetchone()
        return self.codec.decode(row[0]) if row else None

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            part = keys[start:start + _LOOKUP_CHUNK]
            rows = self.db.execute(f"SELECT key, {self.column} FROM {self.table} "
                                   f"WHERE key IN ({','.join('?' * len(part))})", part).fetchall()
            found.update((key, self.codec.decode(value)) for key, value in rows)
        return found

    def put(self, key: str, value: Any) -> None:
        self.put_many([(key, value)])

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        if self._error is not None:
            raise self._error
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name=f"{self.name}-cache", daemon=True)
            self._writer.start()
        for key, value in items:
            self._queue.put((key, self.codec.encode(value)))

    def _write_loop(self) -> None:
        db = self._connect()
        insert = f"INSERT OR REPLACE INTO {self.table} (key, {self.column}) VALUES (?, ?)"
        try:
            while True:
                items = [self._queue.get()]
                time.sleep(0.002)            # let a burst of values gather: fewer wake-ups, one commit
                while not self._queue.empty():
                    items.append(self._queue.get_nowait())
                rows = [item for item in items if item is not None]
                try:
                    if rows:
                        with db:
                            db.execute("BEGIN")
                            db.executemany(insert, rows)
                except sqlite3.Error as exc:
                    self._error = exc
                finally:
                    for _ in items:
                        self._queue.task_done()
                if len(rows) < len(items):       # None: close() asked the writer to stop
                    return
        finally:
            db.close()

    def flush(self) -> None:
        self._queue.join()
        if self._error is not None:
            raise InputError(f"{self.path}: cannot write the {self.name} cache: {self._error}")

    def __len__(self) -> int:
        self.flush()
        return self.db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]

    def close(self) -> None:
        if self.db is None:
            return
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if not self.read_only:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        self.db = None
