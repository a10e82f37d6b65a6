"""Catalogs of the dialogue domains: a JSON list of items (recipes, products, ...), checked on load."""
from __future__ import annotations

import json
from pathlib import Path

from synthtune.core.errors import InputError


def read_catalog(path, fields: tuple[str, ...], kind: str) -> list[dict]:
    """A JSON list of catalog items, each with `fields`; errors name the file and the item."""
    try:
        with open(Path(path), encoding="utf-8") as fh:
            catalog = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(catalog, list) or not catalog:
        raise InputError(f"{path}: the catalog must be a non-empty JSON list of {kind}s")
    seen = set()
    for n, item in enumerate(catalog):
        name = f"{kind} #{n} (id {item.get('id')!r})" if isinstance(item, dict) else f"{kind} #{n}"
        if not isinstance(item, dict):
            raise InputError(f"{path}: {name} is not an object")
        missing = [key for key in fields if key not in item or item[key] in (None, "", [])]
        if missing:
            raise InputError(f"{path}: {name} lacks {', '.join(missing)}")
        if item["id"] in seen:
            raise InputError(f"{path}: {name}: duplicate id")
        seen.add(item["id"])
    return catalog
