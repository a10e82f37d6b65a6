"""Raw-text JSONL or JSON array: one `content` string per row (continued pretraining, code)."""
from __future__ import annotations

from pathlib import Path

from synthtune.generate.loaders.base import RowBuilder, load_object_rows, need_str, register_loader


def text_body(row: dict, mapping: dict) -> str:
    return need_str(row, mapping["content"], "content")


@register_loader("text", mapping={"content": "content", "group": None})
def load_text(path: Path, rows: RowBuilder, mapping: dict, options: dict, explicit: dict) -> None:
    load_object_rows(path, rows, mapping, text_body)
