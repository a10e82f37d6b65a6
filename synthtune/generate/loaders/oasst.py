"""OASST message trees (one tree per JSONL row or array item): every root-to-leaf path is one
conversation; all paths of a tree share the group `<source>:<message_tree_id>`.

options: `lang` (keep paths whose every message has this language; null: all) and `min_messages`
(shorter paths are skipped, counted in `skipped_by`). A trailing user turn is dropped (it has no
reply to learn from); two leaves that become the same conversation count as `duplicate_path`.
"""
from __future__ import annotations

import json
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.generate.loaders.base import RowBuilder, RowError, iter_objects, register_loader, short, type_name

OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


def oasst_paths(root: dict) -> list[list[dict]]:
    """Validate a tree and return every root-to-leaf path (iterative: deep trees do not recurse)."""
    paths, stack = [], [(root, "prompt", [])]
    while stack:
        node, where, prefix = stack.pop()
        if not isinstance(node, dict):
            raise RowError(f"{where} must be an object, got {type_name(node)}")
        role = node.get("role")
        if role not in OASST_ROLES:
            raise RowError(f"{where}: unknown role {short(role)} (allowed: prompter/assistant)")
        text = node.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RowError(f"{where}.text must be a non-empty string")
        replies = node.get("replies") or []
        if not isinstance(replies, list):
            raise RowError(f"{where}.replies must be a list, got {type_name(replies)}")
        path = prefix + [node]
        if not replies:
            paths.append(path)
        for index in range(len(replies) - 1, -1, -1):   # reversed push keeps left-to-right order
            stack.append((replies[index], f"{where}.replies[{index}]", path))
    return paths


@register_loader("oasst", options={"lang": "en", "min_messages": 4})
def load_oasst(path: Path, rows: RowBuilder, mapping: dict, options: dict, explicit: dict) -> None:
    lang, min_messages = options["lang"], options["min_messages"]
    if not isinstance(min_messages, int) or isinstance(min_messages, bool) or min_messages < 1:
        raise InputError(f"loader 'oasst': option min_messages must be an integer >= 1, got {min_messages!r}")
    if lang is not None and not isinstance(lang, str):
        raise InputError(f"loader 'oasst': option lang must be a string or null, got {lang!r}")
    for line, obj, prefix in iter_objects(path, rows):
        tree_id = obj.get("message_tree_id")
        if not isinstance(tree_id, (str, int)) or isinstance(tree_id, bool) or str(tree_id) == "":
            rows.reject(line, f"{prefix}missing or invalid message_tree_id")
            continue
        try:
            paths = oasst_paths(obj.get("prompt"))
        except RowError as exc:
            rows.reject(line, prefix + str(exc))
            continue
        seen: set[str] = set()
        for path_nodes in paths:
            if lang is not None and any(node.get("lang") != lang for node in path_nodes):
                rows.skip("lang")
                continue
            if path_nodes[-1]["role"] == "prompter":
                path_nodes = path_nodes[:-1]          # a trailing user turn has no reply to learn from
            if len(path_nodes) < min_messages or not path_nodes:
                rows.skip("min_messages")
                continue
            messages = [{"role": OASST_ROLES[n["role"]], "content": n["text"]} for n in path_nodes]
            key = json.dumps(messages, sort_keys=True)
            if key in seen:                            # two leaves differing only by a dropped user turn
                rows.skip("duplicate_path")
                continue
            seen.add(key)
            meta = {"tree_id": str(tree_id)}
            if lang is not None:
                meta["lang"] = lang
            if path_nodes[-1].get("message_id") is not None:
                meta["leaf_message_id"] = str(path_nodes[-1]["message_id"])
            rows.add(line, messages=messages, group=str(tree_id), meta=meta, prefix=prefix)


def to_seq2seq(record: dict) -> dict:
    """{"input": history rendered as "<Role user>..."/"<Role bot>..." lines, "output": last assistant reply}."""
    messages = record.get("messages") or []
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("to_seq2seq needs a chat record whose last message is an assistant reply")
    tags = {"user": "user", "assistant": "bot", "system": "system"}
    history = "\n".join(f"<Role {tags[m['role']]}>{m['content']}" for m in messages[:-1])
    return {"input": history, "output": messages[-1]["content"]}
