"""OASST message trees (one tree per JSONL row or array item): every root-to-leaf path is one
conversation; all paths of a tree share the group `<source>:<message_tree_id>`.

options: `lang` (keep paths whose every message has this language; null: all) and `min_messages`
(shorter paths are skipped, counted in `skipped_by`). A trailing user turn is dropped (it has no
reply to learn from); two leaves that become the same conversation count as `duplicate_path`.

A message marked `deleted: true`, or with `review_result: false` (moderators turned it down), is
left out with all its replies: the conversations through it are skipped, counted as `deleted` or
`review_failed` (one per leaf below it), and what lies below it is not validated. A parent whose
replies are all left out ends a conversation itself. `review_result: null` (not reviewed yet) is kept.
"""
from __future__ import annotations

import json
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.generate.loaders.base import RowBuilder, RowError, iter_objects, register_loader, short, type_name

OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


def left_out(node: object) -> str | None:
    """Why a message and its subtree are left out (`deleted`, `review_failed`), or None."""
    if not isinstance(node, dict):
        return None
    if node.get("deleted") is True:
        return "deleted"
    if node.get("review_result") is False:
        return "review_failed"
    return None


def count_leaves(node: object) -> int:
    """The leaves below `node` (itself if it has no replies), read leniently: it is being left out."""
    leaves, stack = 0, [node]
    while stack:
        node = stack.pop()
        replies = node.get("replies") if isinstance(node, dict) else None
        if isinstance(replies, list) and replies:
            stack.extend(replies)
        else:
            leaves += 1
    return leaves


def oasst_paths(root: dict, pruned: dict[str, int] | None = None) -> list[list[dict]]:
    """Validate a tree and return every root-to-leaf path (iterative: deep trees do not recurse).
    Deleted and failed-review messages are cut with their subtrees; `pruned` counts the leaves cut
    by reason."""
    paths, stack = [], [(root, "prompt", [])]
    pruned = {} if pruned is None else pruned
    while stack:
        node, where, prefix = stack.pop()
        reason = left_out(node)
        if reason is not None:
            pruned[reason] = pruned.get(reason, 0) + count_leaves(node)
            continue
        if not isinstance(node, dict):
            raise RowError(f"{where} must be an object, got {type_name(node)}",
                           "missing_field" if node is None else "wrong_type")
        role = node.get("role")
        if role not in OASST_ROLES:
            raise RowError(f"{where}: unknown role {short(role)} (allowed: prompter/assistant)", "unknown_role")
        text = node.get("text")
        if not isinstance(text, str) or not text.strip():
            code = "missing_field" if text is None else "wrong_type" if not isinstance(text, str) else "empty_field"
            raise RowError(f"{where}.text must be a non-empty string", code)
        replies = node.get("replies") or []
        if not isinstance(replies, list):
            raise RowError(f"{where}.replies must be a list, got {type_name(replies)}", "wrong_type")
        path = prefix + [node]
        if not any(left_out(reply) is None for reply in replies):   # no replies, or every reply left out
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
    for where, obj in iter_objects(path, rows):
        tree_id = obj.get("message_tree_id")
        if not isinstance(tree_id, (str, int)) or isinstance(tree_id, bool) or str(tree_id) == "":
            rows.reject(where, "missing or invalid message_tree_id",
                        "missing_field" if tree_id is None else "wrong_type")
            continue
        pruned: dict[str, int] = {}
        try:
            paths = oasst_paths(obj.get("prompt"), pruned)
        except RowError as exc:
            rows.reject(where, str(exc), exc.code)
            continue
        for reason, leaves in sorted(pruned.items()):
            rows.skip(reason, leaves)
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
            rows.add(where, messages=messages, group=str(tree_id), meta=meta)


def to_seq2seq(record: dict) -> dict:
    """{"input": history rendered as "<Role user>..."/"<Role bot>..." lines, "output": last assistant reply}."""
    messages = record.get("messages") or []
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("to_seq2seq needs a chat record whose last message is an assistant reply")
    tags = {"user": "user", "assistant": "bot", "system": "system"}
    history = "\n".join(f"<Role {tags[m['role']]}>{m['content']}" for m in messages[:-1])
    return {"input": history, "output": messages[-1]["content"]}
