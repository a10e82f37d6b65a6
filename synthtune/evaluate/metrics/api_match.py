"""API match: how many of the APIs a generated Lua/Markdown answer calls exist in the API documents.

The luacoder method, made precise.

API documents: JSON files `{"library": str, "functions": [{"name", "signature", "doc", "kind"?}]}`;
a name is written the way Lua code uses it: `mod.fn` / `mod.sub.fn` (module function), `fn` (a
global), `Class:method` (a method); `"kind": "callback"` marks a function the program defines for
the engine to call (`function game.update(dt) ... end`).

Which text is code: the fenced code blocks and inline code spans of a Markdown answer; an answer
with neither is taken as code as a whole. Comments and string literals are removed first.

Extracted units (a set per answer, so a call repeated in a loop counts once):
* `a.b(` and `a.b.c(` give the dotted name `a.b` / `a.b.c`; `f(` gives `f`;
* `x:m(` (also after a call or index: `ui.find("ok"):show(`) gives the method unit `:m`, because
  the receiver's class is unknown without type inference; `:m` is known when any documented class
  has a method `m`;
* definitions are not calls: names defined in the answer (`function f(`, `local function f(`,
  `function M.f(`, `function C:m(`, `f = function(`) are left out, except documented callbacks,
  whose definition is the way to use them (they count as known);
* not counted: Lua keywords, the Lua standard library (`print(`, `pairs(`, `string.format(`,
  `table.insert(` ...), string methods (`s:upper(`) unless documented, and calls on `self`.
  The name must touch its parenthesis (`f (x)` is not read as a call: prose has such patterns).

Metrics (micro, summed over prompts): `api_match_precision` = known extracted / extracted;
`api_match_recall` = extracted units that the reference answer also uses (documented ones only) /
documented units of the references; `api_match_f1`; `api_invented_rate` = extracted units not in
the documents / extracted (1 - precision when anything is extracted); `api_answers_with_invented`
= share of answers with at least one invented unit; `api_calls_per_answer`. With nothing
extracted, precision is 0.0 (and `api_calls_per_answer` says why).

Registered as the `api_match` metric of a model whose answers to the API prompts the predict stage
wrote (predictions/api/<model>.jsonl); absent otherwise.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.core.io import read_jsonl
from synthtune.evaluate.metrics.registry import MetricContext, register_metric

NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")
LUA_KEYWORDS = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
                "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"}
LUA_GLOBALS = {"assert", "collectgarbage", "dofile", "error", "getmetatable", "ipairs", "load", "loadfile",
               "loadstring", "next", "pairs", "pcall", "print", "rawequal", "rawget", "rawlen", "rawset",
               "require", "select", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall"}
LUA_LIBRARIES = {"coroutine", "debug", "io", "math", "os", "package", "string", "table", "utf8"}
STRING_METHODS = {"byte", "find", "format", "gmatch", "gsub", "len", "lower", "match", "rep", "reverse", "sub",
                  "upper"}

_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
# comments first, then long strings, then quoted strings: the leftmost match wins
_NOISE = re.compile(r"--\[(=*)\[.*?\]\1\]|--[^\n]*|\[(=*)\[.*?\]\2\]|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'",
                    re.S)
_DEFINITION = re.compile(r"\bfunction\s+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?::[A-Za-z_]\w*)?)\s*\(|"
                         r"(?<![\w.:])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*=\s*function\s*\(")
_CALL = re.compile(r"(?<![\w.:])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\(")
_METHOD = re.compile(r"(?<!:):([A-Za-z_]\w*)\(")


@dataclass
class ApiIndex:
    functions: set[str] = field(default_factory=set)     # dotted names and globals
    methods: set[str] = field(default_factory=set)       # ":m" for every documented Class:m
    callbacks: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)

    def known(self, unit: str) -> bool:
        return unit in self.callbacks or (unit in self.methods if unit.startswith(":") else unit in self.functions)

    def __len__(self) -> int:
        return len(self.functions) + len(self.methods) + len(self.callbacks)


def load_api_docs(path: str | Path) -> ApiIndex:
    """Read one API JSON file or every *.json in a folder; a bad file is one error naming it."""
    path = Path(path)
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise InputError(f"{path}: no API documents (*.json) found")
    index = ApiIndex()
    for file in files:
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{file}: API document is not valid JSON: {exc.msg} "
                             f"(line {exc.lineno} column {exc.colno})") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{file}: API document is not UTF-8 (byte {exc.start})") from None
        entries = doc.get("functions") if isinstance(doc, dict) else None
        if not isinstance(entries, list) or not entries:
            raise InputError(f"{file}: API document needs a non-empty \"functions\" list")
        for i, entry in enumerate(entries):
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or not NAME.match(name):
                raise InputError(f"{file}: functions[{i}]: \"name\" must look like mod.fn, fn or Class:method "
                                 f"(got {name!r})")
            if entry.get("kind") == "callback":
                index.callbacks.add(unit_of(name))
            elif ":" in name:
                index.methods.add(":" + name.split(":")[1])
            else:
                index.functions.add(name)
        index.files.append(file.name)
    return index


def code_of(text: str) -> str:
    """The code in an answer: fenced blocks and inline code spans, or the whole text if it has none."""
    blocks = [m.group(2) for m in _FENCE.finditer(text)]
    prose = _FENCE.sub("\n", text)
    spans = [m.group(1) for m in _INLINE.finditer(prose)]
    return "\n".join(blocks + spans) if blocks or spans else text


def strip_lua(code: str) -> str:
    """Comments removed, string literals emptied (`""`), so text inside them is never read as a call."""
    return _NOISE.sub(lambda m: " " if m.group(0).startswith("--") else '""', code)


def _builtin(name: str) -> bool:
    root = name.split(".")[0]
    return (name in LUA_KEYWORDS or name in LUA_GLOBALS or ("." in name and root in LUA_LIBRARIES)
            or root == "self")


def unit_of(name: str) -> str:
    """`Class:m` -> `:m` (a method is matched by its name); other names stay as they are."""
    return ":" + name.split(":")[1] if ":" in name else name


def extract_calls(text: str, api: ApiIndex) -> set[str]:
    """The API units an answer uses (see the module docstring for the exact rules)."""
    code = strip_lua(code_of(text))
    defined = {unit_of(m.group(1) or m.group(2)) for m in _DEFINITION.finditer(code)}
    units = defined & api.callbacks           # callbacks are used by defining them
    defined -= api.callbacks
    units |= {m.group(1) for m in _CALL.finditer(code) if not _builtin(m.group(1)) and m.group(1) not in defined}
    units |= {":" + m.group(1) for m in _METHOD.finditer(code)
              if ":" + m.group(1) not in defined
              and (m.group(1) not in STRING_METHODS or ":" + m.group(1) in api.methods)}
    return units


def api_match(outputs: Sequence[str], references: Sequence[str], api: ApiIndex) -> dict:
    """Micro precision / recall / invented rate of answers against reference answers (same order)."""
    extracted = known = invented_answers = 0
    hit = ref_total = 0
    for output, reference in zip(outputs, references):
        units = extract_calls(output, api)
        ref_units = {u for u in extract_calls(reference, api) if api.known(u)}
        good = {u for u in units if api.known(u)}
        extracted += len(units)
        known += len(good)
        invented_answers += len(units) > len(good)
        hit += len(good & ref_units)
        ref_total += len(ref_units)
    n = len(outputs)
    precision = known / extracted if extracted else 0.0
    recall = hit / ref_total if ref_total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"api_match_precision": round(precision, 4), "api_match_recall": round(recall, 4),
            "api_match_f1": round(f1, 4),
            "api_invented_rate": round((extracted - known) / extracted, 4) if extracted else 0.0,
            "api_answers_with_invented": round(invented_answers / n, 4) if n else 0.0,
            "api_calls_per_answer": round(extracted / n, 4) if n else 0.0, "api_prompts": n}


def score_api_predictions(api: ApiIndex, prompts: Sequence[dict], predictions: Sequence[dict], source: str) -> dict:
    """api_match of one model's answers ({"id", "output"}) to the prompt set ({"id", "prompt", "reference"})."""
    refs = {p["id"]: p["reference"] for p in prompts}
    outputs = {p["id"]: p["output"] for p in predictions}
    if set(outputs) != set(refs) or len(predictions) != len(refs):
        raise InputError(f"{source}: prediction ids do not match the API prompts "
                         f"({len(set(refs) - set(outputs))} missing, {len(set(outputs) - set(refs))} unknown)")
    ids = sorted(refs)
    return api_match([outputs[i] for i in ids], [refs[i] for i in ids], api)


@register_metric("api_match", scope="model")
def api_match_metric(ctx: MetricContext) -> dict:
    if ctx.predictions_dir is None or ctx.api is None:
        return {}
    api_file = ctx.predictions_dir / "api" / f"{ctx.model}.jsonl"
    if not api_file.is_file():
        return {}
    return score_api_predictions(ctx.api, ctx.api_prompts, read_jsonl(api_file, allow_empty=True), str(api_file))
