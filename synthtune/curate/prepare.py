"""Prepare: validate every raw record, normalize text, drop exact duplicates, split by group.

Splits hash each record's `group` (dialogue, document, tree) with the seed, so a group never
straddles train and test and adding records never moves existing ones between splits. A record
whose source ships its own split (`meta.split` in train/val/test) keeps it.
Bad rows are quarantined with file, line, code and reason (codes: synthtune.core.records.REJECT_CODES);
they never stop the good rows.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from synthtune.core.config import PrepareParams
from synthtune.core.errors import InputError
from synthtune.core.io import iter_jsonl_lines
from synthtune.core.records import OTHER_CODE, REJECT_CODES, normalize_record, validate_record

SPLITS = ("train", "val", "test")


def split_of(group: str, seed: int, params: PrepareParams) -> str:
    """Deterministic split from a hash of (seed, group): stable when data is added."""
    digest = hashlib.sha256(f"{seed}:{group}".encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < params.test_fraction:
        return "test"
    if u < params.test_fraction + params.val_fraction:
        return "val"
    return "train"


@dataclass
class Prepared:
    splits: dict[str, list[dict]] = field(default_factory=lambda: {name: [] for name in SPLITS})
    rejects: list[dict] = field(default_factory=list)
    duplicates: int = 0
    read: int = 0

    def metrics(self) -> dict:
        """Counts, with rejects by reason code: `rejected.<code>` for every code of REJECT_CODES (0
        included, so every run has the same keys and `dvc metrics diff` lines them up), plus
        `rejected.other` for rejects of files written before codes existed."""
        out = {"records_read": self.read, "rejected": len(self.rejects), "duplicates_removed": self.duplicates}
        out.update({f"{name}_records": len(rows) for name, rows in self.splits.items()})
        codes = Counter(r.get("code") or OTHER_CODE for r in self.rejects)
        out.update({f"rejected.{code}": codes.pop(code, 0) for code in REJECT_CODES})
        out.update({f"rejected.{code}": n for code, n in sorted(codes.items())})   # `other`, or a newer code
        return out


def source_files(folder: Path, sources: Iterable[str], what: str = "raw JSONL") -> list[Path]:
    """`<folder>/<name>.jsonl` of every source in params, sorted: the files prepare reads. Files of
    sources no longer in params (`orphan_files`) are never read, so a workspace that still holds
    them prepares the same data as a fresh clone. A missing file is one error line."""
    names = sorted(sources)
    missing = [name for name in names if not (folder / f"{name}.jsonl").is_file()]
    if len(missing) == 1:
        raise InputError(f"{folder / missing[0]}.jsonl: file not found (sources.{missing[0]} has not been "
                         f"generated: run `dvc repro generate@{missing[0]}`)")
    if missing:
        raise InputError(f"{folder}: no {what} files for sources {', '.join(missing)} (run `dvc repro`)")
    return sorted(folder / f"{name}.jsonl" for name in names)


def orphan_files(folder: Path, sources: Iterable[str]) -> list[Path]:
    """The `*.jsonl` files of `folder` that belong to no source in params (left by a removed source)."""
    wanted = {f"{name}.jsonl" for name in sources}
    return sorted(p for p in folder.glob("*.jsonl") if p.name not in wanted) if folder.is_dir() else []


def prepare_records(raw_files: list[Path], seed: int, params: PrepareParams,
                    load_rejects: list[dict] | None = None) -> Prepared:
    """Validate, normalize, dedup and split; `load_rejects` (rows the loaders refused) join the report."""
    if not raw_files:
        raise InputError("no raw JSONL files to prepare (is data/raw empty?)")
    result, seen = Prepared(rejects=list(load_rejects or [])), set()
    for path in sorted(raw_files):
        for lineno, obj, error in iter_jsonl_lines(path):
            result.read += 1
            problem = error or validate_record(obj)     # a Problem: the reason, with its .code
            if problem is not None:
                result.rejects.append({"file": str(path), "line": lineno, "code": problem.code,
                                       "reason": str(problem)})
                continue
            record = normalize_record(obj)
            if record["id"] in seen:
                result.duplicates += 1
                continue
            seen.add(record["id"])
            # A source that ships its own split (QA JSON's train/test) keeps it; the rest hash.
            split = record["meta"].get("split")
            if split not in result.splits:
                split = split_of(record["group"], seed, params)
            result.splits[split].append(record)
    for rows in result.splits.values():
        rows.sort(key=lambda r: r["id"])
    return result


def intent_distribution(splits: dict[str, list[dict]]) -> list[dict]:
    """Rows (intent, count) of the user turns of every prepared dialogue: the data's intent
    distribution, a bar chart in `dvc plots` that experiments can be compared on."""
    counts = Counter((message.get("annotations") or {}).get("intent")
                     for rows in splits.values() for record in rows for message in record.get("messages") or []
                     if message["role"] == "user")
    counts.pop(None, None)
    return [{"intent": intent, "count": n} for intent, n in sorted(counts.items())]
