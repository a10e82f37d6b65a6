"""Chat JSONL or JSON array: a `messages` list of {role, content[, annotations]} per row."""
from __future__ import annotations

from pathlib import Path

from synthtune.core.records import ROLES
from synthtune.generate.loaders.base import RowBuilder, RowError, load_object_rows, register_loader, short, type_name


def chat_messages(row: dict, mapping: dict) -> list[dict]:
    key = mapping["messages"]
    messages = row.get(key)
    if messages is None:
        raise RowError(f"missing field '{key}'", "missing_field")
    if not isinstance(messages, list):
        raise RowError(f"field '{key}' must be a list, got {type_name(messages)}", "wrong_type")
    if not messages:
        raise RowError(f"field '{key}' is empty", "empty_field")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RowError(f"{key}[{index}] must be an object, got {type_name(message)}", "wrong_type")
        role = message.get("role")
        if role not in ROLES:
            raise RowError(f"{key}[{index}]: unknown role {short(role)} (allowed: {'/'.join(ROLES)})", "unknown_role")
        content = message.get("content")
        if not isinstance(content, str):
            raise RowError(f"{key}[{index}].content must be a string, got {type_name(content)}",
                           "missing_field" if content is None else "wrong_type")
        if not content.strip():
            raise RowError(f"{key}[{index}].content is empty", "empty_field")
        item = {"role": role, "content": content}
        if isinstance(message.get("annotations"), dict):
            item["annotations"] = message["annotations"]
        out.append(item)
    return out


@register_loader("chat", mapping={"messages": "messages", "group": None})
def load_chat(path: Path, rows: RowBuilder, mapping: dict, options: dict, explicit: dict) -> None:
    load_object_rows(path, rows, mapping, chat_messages)
