"""Alpaca JSONL or JSON array: instruction (+ input) -> user, output -> assistant, optional system."""
from __future__ import annotations

from pathlib import Path

from synthtune.generate.loaders.base import RowBuilder, load_object_rows, need_str, opt_str, register_loader

ALPACA_FIELDS = {"instruction": "instruction", "input": "input", "output": "output", "system": "system"}


def alpaca_messages(row: dict, mapping: dict) -> list[dict]:
    """instruction (+ "\\n\\n" + input when non-empty) -> user, output -> assistant; optional system."""
    instruction = need_str(row, mapping["instruction"], "instruction")
    extra = opt_str(row, mapping.get("input"))
    output = need_str(row, mapping["output"], "output")
    system = opt_str(row, mapping.get("system"))
    user = instruction + ("\n\n" + extra if extra.strip() else "")
    messages = [{"role": "system", "content": system}] if system.strip() else []
    return messages + [{"role": "user", "content": user}, {"role": "assistant", "content": output}]


@register_loader("alpaca", mapping={**ALPACA_FIELDS, "group": None})
def load_alpaca(path: Path, rows: RowBuilder, mapping: dict, options: dict, explicit: dict) -> None:
    load_object_rows(path, rows, mapping, alpaca_messages)
