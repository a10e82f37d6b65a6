"""The canonical record schema and its one validator.

    {"id": "<stable content hash>", "source": "...", "domain": "...", "group": "<leak-free split key>",
     "messages": [{"role": "system|user|assistant", "content": "...", "annotations": {...}}],  # chat
     "text": "...",                                                                            # raw text
     "meta": {...}}

A record holds exactly one of `messages` or `text`. Every reader that accepts records calls
`validate_record`; a failing record is quarantined by the caller with the returned reason.
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Any

ROLES = ("system", "user", "assistant")
REQUIRED_STR = ("source", "group")
KNOWN_KEYS = {"id", "source", "domain", "group", "messages", "text", "meta"}


def content_hash(obj: Any, length: int = 16) -> str:
    """Stable hash of JSON-able content: same content, same id, on every machine."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:length]


def record_id(record: dict) -> str:
    body = record.get("messages") if record.get("messages") is not None else record.get("text")
    return content_hash({"source": record.get("source"), "body": body})


def validate_record(record: Any) -> str | None:
    """Return None when `record` follows the schema, else a one-line reason."""
    if not isinstance(record, dict):
        return f"record must be a JSON object, got {type(record).__name__}"
    unknown = sorted(set(record) - KNOWN_KEYS)
    if unknown:
        return f"unknown field(s): {', '.join(unknown)}"
    for key in REQUIRED_STR:
        if not isinstance(record.get(key), str) or not record[key]:
            return f"field '{key}' must be a non-empty string"
    if "domain" in record and not isinstance(record["domain"], str):
        return "field 'domain' must be a string"
    if "meta" in record and not isinstance(record["meta"], dict):
        return "field 'meta' must be an object"
    has_messages, has_text = record.get("messages") is not None, record.get("text") is not None
    if has_messages == has_text:
        return "record must hold exactly one of 'messages' or 'text'"
    if has_text:
        if not isinstance(record["text"], str) or not record["text"].strip():
            return "field 'text' must be a non-empty string"
        return None
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        return "field 'messages' must be a non-empty list"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{index}] must be an object"
        role = message.get("role")
        if role not in ROLES:
            return f"messages[{index}].role {role!r} is not one of {'/'.join(ROLES)}"
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            return f"messages[{index}].content must be a non-empty string"
        annotations = message.get("annotations")
        if annotations is not None and not isinstance(annotations, dict):
            return f"messages[{index}].annotations must be an object"
    # A prompt-only record (an evaluation prompt set, e.g. a CSV with a prompt column alone)
    # says so in meta; any other conversation needs an assistant turn to train on.
    if not any(m["role"] == "assistant" for m in messages) and not record.get("meta", {}).get("prompt_only"):
        return "messages hold no assistant turn"
    return None


def normalize_text(text: str) -> str:
    """Unicode NFC, no trailing spaces, no runs of blank lines; line structure is kept (code, lists)."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [" ".join(line.split()) if not line.startswith((" ", "\t")) else line.rstrip()
             for line in text.split("\n")]
    out, blank = [], 0
    for line in lines:
        blank = blank + 1 if not line else 0
        if blank <= 1:
            out.append(line)
    return "\n".join(out).strip()


def normalize_record(record: dict) -> dict:
    """Normalized copy of a valid record, with its id recomputed from the normalized content."""
    record = json.loads(json.dumps(record))
    if record.get("messages") is not None:
        for message in record["messages"]:
            message["content"] = normalize_text(message["content"])
    else:
        record["text"] = normalize_text(record["text"])
    record.setdefault("domain", "general")
    record.setdefault("meta", {})
    record["id"] = record_id(record)
    return record
