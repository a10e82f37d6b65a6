"""Small writers for `dvc plots` data files (CSV/TSV), atomic like every output."""
from __future__ import annotations

import csv
import os

from lib.io import atomic_open


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    fields = list(rows[0]) if rows else []
    with atomic_open(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
