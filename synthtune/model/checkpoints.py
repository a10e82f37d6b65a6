"""Training checkpoints: where they go, which run they belong to, and which one a killed run resumes.

Checkpoints go to `<out>.ckpt/<run key>/`, outside the stage's outs (DVC deletes outs before a
run). The run key hashes params, data and base model, so a killed run resumes from its last valid
checkpoint and a checkpoint of another run is never resumed; train_sft deletes the folder after
success.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from synthtune.core.config import ModelParams, TrainParams


def run_key(train_rows: list[dict], val_rows: list[dict], base_dir: Path, model: ModelParams,
            train: TrainParams, seed: int, max_length: int) -> str:
    """Hash of everything that shapes a training run: a checkpoint is resumed only under the same key."""
    h = hashlib.sha256()
    settings = {"seed": seed, "max_length": max_length, "model": model.model_dump(mode="json"),
                "train": train.model_dump(mode="json", exclude={"resume"})}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for rows in (train_rows, val_rows):
        h.update(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode())
        h.update(b"\0")
    for path in sorted(p for p in Path(base_dir).rglob("*") if p.is_file()):
        h.update(str(path.relative_to(base_dir)).encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def default_checkpoint_root(out_dir: Path) -> Path:
    """`models/tuned` → `models/tuned.ckpt`: next to the output, not inside it (DVC deletes outs before a run)."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.ckpt"


def last_valid_checkpoint(run_dir: Path) -> Path | None:
    """The highest `checkpoint-N` whose trainer_state.json (written last by Trainer) exists."""
    if not run_dir.is_dir():
        return None
    found = []
    for path in run_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and (path / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def checkpoint_step(checkpoint: Path | str) -> int:
    """N of a `checkpoint-N` folder."""
    return int(Path(checkpoint).name.split("-")[1])
