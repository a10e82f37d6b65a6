"""The canonical record schema, its one validator, and the reject codes.

    {"id": "<stable content hash>", "source": "...", "domain": "...", "group": "<leak-free split key>",
     "messages": [{"role": "system|user|assistant", "content": "...", "annotations": {...}}],  # chat
     "text": "...",                                                                            # raw text
     "meta": {...}}

A record holds exactly one of `messages` or `text`. Every reader that accepts records calls
`validate_record`; a failing record is quarantined by the caller with the returned reason.

A quarantined row (a reject) is `{"file", "line", "code", "reason", ...}`: `line` is a line of
`file` (1-based) or null where the row has no file line (then `item`, `row` or `chunk` says which
one it is), `reason` the full one-line message, and `code` one of REJECT_CODES, a short stable
slug that metrics count by (`rejected.<code>` in metrics/prepare.json), so runs compare with
`dvc metrics diff` however the messages are worded.
"""
from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Any

ROLES = ("system", "user", "assistant")
REQUIRED_STR = ("source", "group")
KNOWN_KEYS = {"id", "source", "domain", "group", "messages", "text", "meta"}

# The one list of reject codes (README's bad-input table quotes it). Add a code here before a
# reader uses it; never rename one (metrics history is keyed by it).
REJECT_CODES: dict[str, str] = {
    "malformed_json": "a line or array item that is not valid JSON",
    "invalid_utf8": "bytes that are not UTF-8",
    "malformed_csv": "a CSV row the csv module cannot parse (e.g. a stray quote)",
    "column_count": "a CSV row with more or fewer cells than the header",
    "wrong_type": "a row or field of the wrong JSON type (an array where an object belongs, a number for text)",
    "missing_field": "a required field that is absent or null",
    "empty_field": "a required string or list that is empty or blank",
    "unknown_field": "a record key outside the canonical schema",
    "unknown_role": "a message role outside the allowed ones",
    "messages_or_text": "a record holding both or neither of `messages` and `text`",
    "no_assistant_turn": "a conversation with no assistant reply (and not marked prompt-only)",
    "unreadable_document": "a document that cannot be read (bad UTF-8, a broken PDF)",
    "no_text": "a document without text (a scanned PDF needs OCR)",
    "teacher_error": "the teacher request failed, or its answer stayed malformed JSON after one repair",
    "teacher_unusable": "the teacher's answer lacks what was asked for (no question, no text, dropped slot values)",
    "ungrounded": "a generated answer its chunk does not support (low embedding cosine, or a number or name not in the chunk)",
    "invalid_row": "a row its loader refused without a more specific code (a loader registered elsewhere)",
}
OTHER_CODE = "other"   # counted for rejects of files written before codes existed; never set by a reader


class Problem(str):
    """A one-line reject reason that carries its stable `code` (one of REJECT_CODES).

    A str, so callers that only need the message keep treating it as one; `.code` is what
    metrics count. Concatenating gives a plain str: take `.code` first."""

    code: str

    def __new__(cls, reason: str, code: str) -> Problem:
        if code not in REJECT_CODES:
            raise ValueError(f"unknown reject code {code!r} (add it to REJECT_CODES)")
        self = super().__new__(cls, reason)
        self.code = code
        return self

    def __getnewargs__(self) -> tuple[str, str]:     # pickling (worker processes) keeps the code
        return str(self), self.code


def content_hash(obj: Any, length: int = 16) -> str:
    """Stable hash of JSON-able content: same content, same id, on every machine."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:length]


def record_id(record: dict) -> str:
    body = record.get("messages") if record.get("messages") is not None else record.get("text")
    return content_hash({"source": record.get("source"), "body": body})


def _string_code(container: dict, key: str) -> str:
    """The code of a field that should be a non-empty string and is not."""
    value = container.get(key)
    if value is None:
        return "missing_field"
    return "wrong_type" if not isinstance(value, str) else "empty_field"


def validate_record(record: Any) -> Problem | None:
    """Return None when `record` follows the schema, else a one-line reason with its `.code`."""
    if not isinstance(record, dict):
        return Problem(f"record must be a JSON object, got {type(record).__name__}", "wrong_type")
    unknown = sorted(set(record) - KNOWN_KEYS)
    if unknown:
        return Problem(f"unknown field(s): {', '.join(unknown)}", "unknown_field")
    for key in REQUIRED_STR:
        if not isinstance(record.get(key), str) or not record[key]:
            return Problem(f"field '{key}' must be a non-empty string", _string_code(record, key))
    if "domain" in record and not isinstance(record["domain"], str):
        return Problem("field 'domain' must be a string", "wrong_type")
    if "meta" in record and not isinstance(record["meta"], dict):
        return Problem("field 'meta' must be an object", "wrong_type")
    has_messages, has_text = record.get("messages") is not None, record.get("text") is not None
    if has_messages == has_text:
        return Problem("record must hold exactly one of 'messages' or 'text'", "messages_or_text")
    if has_text:
        if not isinstance(record["text"], str) or not record["text"].strip():
            return Problem("field 'text' must be a non-empty string", _string_code(record, "text"))
        return None
    messages = record["messages"]
    if not isinstance(messages, list) or not messages:
        return Problem("field 'messages' must be a non-empty list",
                       "wrong_type" if not isinstance(messages, list) else "empty_field")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return Problem(f"messages[{index}] must be an object", "wrong_type")
        role = message.get("role")
        if role not in ROLES:
            return Problem(f"messages[{index}].role {role!r} is not one of {'/'.join(ROLES)}", "unknown_role")
        if not isinstance(message.get("content"), str) or not message["content"].strip():
            return Problem(f"messages[{index}].content must be a non-empty string", _string_code(message, "content"))
        annotations = message.get("annotations")
        if annotations is not None and not isinstance(annotations, dict):
            return Problem(f"messages[{index}].annotations must be an object", "wrong_type")
    # A prompt-only record (an evaluation prompt set, e.g. a CSV with a prompt column alone)
    # says so in meta; any other conversation needs an assistant turn to train on.
    if not any(m["role"] == "assistant" for m in messages) and not record.get("meta", {}).get("prompt_only"):
        return Problem("messages hold no assistant turn", "no_assistant_turn")
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
