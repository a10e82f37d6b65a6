"""Reading params.yaml for synthtune.core.config: the data, each key path's line, no key given twice.

Also the convention for errors about several keys of one section (`keys_error`), which pydantic
would locate at the section as a whole.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic_core import PydanticCustomError

from synthtune.core.errors import ParamsError


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


class ParamsLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping.

    Plain YAML keeps the last copy silently, so editing the first `lr:` of a section would change
    nothing. Only our loader refuses: DVC reads params.yaml with its own parser, unaffected. The check
    walks the composed tree (not construct_mapping) to know each mapping's key path for the message.
    """

    def construct_document(self, node):
        self._check_unique(node, ())
        return super().construct_document(node)

    def _check_unique(self, node, prefix: tuple) -> None:
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._check_unique(item, prefix + (str(i),))
        if not isinstance(node, yaml.MappingNode):
            return
        first: dict[tuple, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue   # a `<<: *base` merge is overridden key by key on purpose
            key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if key in first:
                where = f"in {'.'.join(prefix)}" if prefix else "at the top level"
                raise DuplicateKeyError(line, f"duplicate key {key_node.value!r} {where} (first at line {first[key]})")
            first[key] = line
            self._check_unique(value_node, prefix + (key_node.value,))


def key_lines(node: yaml.Node | None, prefix: tuple = ()) -> dict[tuple, int]:
    """Map each key path of a YAML mapping to its 1-based line, for error messages."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = prefix + (key_node.value,)
            lines[path] = key_node.start_mark.line + 1
            lines.update(key_lines(value_node, path))
    return lines


def read_params_yaml(path: Path, text: str) -> tuple[object, dict[tuple, int]]:
    """(data, key path -> line) of a params file's text, parsed once; bad YAML is a ParamsError."""
    try:
        loader = ParamsLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except DuplicateKeyError as exc:
        raise ParamsError(f"{path}:{exc.line}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from None
    return data, key_lines(node)


def keys_error(kind: str, message: str, keys: tuple[str, ...], join: str = ", ", **ctx) -> PydanticCustomError:
    """The error a model validator raises about named keys of its own section. Pydantic locates a model
    validator's error at the section, so load_params would name only the section; it names these keys
    instead, each at its line (see keys_message). `keys_error("missing", "required key is missing",
    ("path",))` reads as `sources.z.path: required key is missing`, like a missing field. The message
    is shown as is: say in it what was got."""
    return PydanticCustomError(kind, message, {**ctx, "keys": tuple(keys), "join": join})


def keys_message(path: Path, lines: dict[tuple, int], loc: tuple, ctx: dict, description: str) -> str:
    """A keys_error's line: at the first named key the file sets (else the section), every key named,
    and another key's line where it differs: `params.yaml:73: prepare.a + prepare.b (line 74): ...`."""
    named = [loc + (key,) for key in ctx["keys"]]
    line = next((lines[k] for k in named if k in lines), lines.get(loc))
    names = ctx["join"].join(".".join(k) + (f" (line {lines[k]})" if lines.get(k, line) != line else "")
                             for k in named)
    return f"{path}:{line}: {names}: {description}" if line else f"{path}: {names}: {description}"
