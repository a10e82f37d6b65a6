"""API match: how many of the APIs a generated Lua/Markdown answer calls exist in the API documents.

The luacoder method, made precise (the seed never published its extraction or its denominator).

Inputs (paths from the dvc.yaml cmd, set by params `api.docs` and `api.prompts`):
* API documents: one JSON file or every *.json of a folder, each in one of two shapes:
  `{"functions": [{"name", "signature"?, "doc"?, "kind"?}, ...]}` (this project's) or
  `{"apis": [{"name", "signature", ...}, ...]}` (the luacoder seed's). A name is written the way
  Lua code uses it: `mod.fn` / `mod.sub.fn` (module function), `fn` (a global), `Class:method` (a
  method); `"kind": "callback"` marks a function the program defines for the engine to call
  (`function game.update(dt) ... end`). Any other shape is one error naming the file and both shapes.
* API prompts: `.jsonl`, one `{"id"?, "prompt", "reference"?}` object a line, or `.csv` with a
  header row holding a `prompt` column (`id`, `reference` optional). Without an id a prompt is
  `line<N>` (its first line in the file); a missing or blank reference means "no reference".

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
* never counted: Lua keywords (`if(x)`) and calls on `self`; the name must touch its parenthesis
  (`f (x)` is not read as a call: prose has such patterns);
* builtins: the Lua standard library (`print(`, `pairs(`, `string.format(`, `table.insert(` ...) and
  string methods (`s:upper(`) are left out UNLESS the documents list them: the documented API wins,
  so an API that documents `print` or `string.format` gets them counted (and known).

A unit is known when the documents list it (dotted name or global; `:m` for a method; a callback);
every other extracted unit is invented (a hallucinated API).

Metrics (micro: units summed over answers; an absent key means undefined, never 0):
* `api_match_precision` = known units / extracted units, both summed over the answers that make at
  least one call; an answer with no calls has no precision and adds nothing. Undefined (left out) when no
  answer makes a call: "no calls" is then told from "all invented" (precision 0.0) by
* `api_no_call_rate` = answers with no extracted unit / answers;
* `api_invented_rate` = invented units / extracted units = 1 - precision (left out with it);
* `api_answers_with_invented` = answers with at least one invented unit / answers;
* `api_calls_per_answer` = extracted units / answers; `api_prompts` = answers;
* `api_match_recall`, over the `api_prompts_with_reference` prompts that have a reference answer
  only: sum of |known units of the answer ∩ documented units of the reference| / sum of |documented
  units of the reference|; undefined (left out) when no reference has a documented unit;
* `api_match_f1` = 2PR/(P+R); 0.0 when recall is 0.0 (whatever the precision, so a model that never
  calls the API scores 0), left out when recall is undefined.

Registered as the `api_match` metric of a model whose answers to the API prompts the predict stage
wrote (predictions/api/<model>.jsonl); absent otherwise.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.core.io import iter_jsonl_lines, read_jsonl, require_file
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
DOC_SHAPES = ('{"functions": [{"name": ..., "signature": ...}, ...]} or '
              '{"apis": [{"name": ..., "signature": ...}, ...]}')
PROMPT_SHAPES = ('.jsonl ({"id"?, "prompt", "reference"?} per line) or .csv '
                 '(header with a "prompt" column; "id", "reference" optional)')

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


# --- inputs ---------------------------------------------------------------------------------------------

def _doc_entries(file: Path, doc) -> Iterator[tuple[str, list]]:
    """(key, entries) of each entry list of a document in one of the accepted shapes."""
    lists = [(key, doc[key]) for key in ("functions", "apis") if isinstance(doc, dict) and key in doc]
    if not lists:
        got = f"keys {sorted(doc)[:8]}" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
        raise InputError(f"{file}: unknown API document shape ({got}); expected {DOC_SHAPES}")
    for key, entries in lists:
        if not isinstance(entries, list) or not entries:
            got = "empty" if isinstance(entries, list) else f"a {type(entries).__name__}"
            raise InputError(f"{file}: \"{key}\" must be a non-empty list (got {got}); expected {DOC_SHAPES}")
    return iter(lists)


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
        for key, entries in _doc_entries(file, doc):
            for i, entry in enumerate(entries):
                name = entry.get("name") if isinstance(entry, dict) else None
                if not isinstance(name, str) or not NAME.match(name):
                    raise InputError(f"{file}: {key}[{i}]: \"name\" must look like mod.fn, fn or Class:method "
                                     f"(got {name!r})")
                if entry.get("kind") == "callback":
                    index.callbacks.add(unit_of(name))
                elif ":" in name:
                    index.methods.add(":" + name.split(":")[1])
                else:
                    index.functions.add(name)
        index.files.append(file.name)
    return index


def _prompt_row(path: Path, line: int, row: dict, seen: dict[str, int]) -> dict:
    """{"id", "prompt", "reference"} of one row (reference None when absent or blank)."""
    prompt, reference, key = row.get("prompt"), row.get("reference"), row.get("id")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"{path}:{line}: \"prompt\" must be a non-empty string (got {prompt!r:.40})")
    if reference is not None and not isinstance(reference, str):
        raise InputError(f"{path}:{line}: \"reference\" must be a string when given (got {type(reference).__name__})")
    if key is None or key == "":
        key = f"line{line}"
    elif isinstance(key, bool) or not isinstance(key, (str, int)):
        raise InputError(f"{path}:{line}: \"id\" must be a string or an integer (got {type(key).__name__})")
    key = str(key)
    if key in seen:
        raise InputError(f"{path}:{line}: duplicate id {key!r} (first on line {seen[key]})")
    seen[key] = line
    return {"id": key, "prompt": prompt, "reference": reference if reference and reference.strip() else None}


def _csv_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: API prompts are not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)   # a stray quote is an error, not a merged row
    start = 1                                   # the first line of the row being read
    try:
        header = [h.strip() for h in next(reader)]
        if "prompt" not in header:
            raise InputError(f"{path}: CSV has no \"prompt\" column (header: {header}); expected {PROMPT_SHAPES}")
        start = reader.line_num + 1
        for cells in reader:
            if any(c.strip() for c in cells):
                if len(cells) != len(header):
                    raise InputError(f"{path}:{start}: expected {len(header)} cells like the header, got {len(cells)}")
                yield start, dict(zip(header, cells))
            start = reader.line_num + 1
    except StopIteration:
        return
    except csv.Error as exc:
        raise InputError(f"{path}:{start}: malformed CSV: {exc}") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    for line, obj, error in iter_jsonl_lines(path, allow_empty=True):
        if error is not None:
            raise InputError(f"{path}:{line}: {error}")
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{line}: expected a JSON object, got {type(obj).__name__}")
        yield line, obj


def load_api_prompts(path: str | Path) -> list[dict]:
    """The API prompt set, [{"id", "prompt", "reference" (str | None)}] in file order, from .jsonl or .csv."""
    path = require_file(path, allow_empty=True)
    readers = {".jsonl": _jsonl_rows, ".csv": _csv_rows}
    if path.suffix.lower() not in readers:
        raise InputError(f"{path}: unknown API prompt file type {path.suffix or '(none)'!r}; expected {PROMPT_SHAPES}")
    seen: dict[str, int] = {}
    prompts = [_prompt_row(path, line, row, seen) for line, row in readers[path.suffix.lower()](path)]
    if not prompts:
        raise InputError(f"{path}: no API prompts")
    return prompts


# --- extraction -----------------------------------------------------------------------------------------

def code_of(text: str) -> str:
    """The code in an answer: fenced blocks and inline code spans, or the whole text if it has none."""
    blocks = [m.group(2) for m in _FENCE.finditer(text)]
    prose = _FENCE.sub("\n", text)
    spans = [m.group(1) for m in _INLINE.finditer(prose)]
    return "\n".join(blocks + spans) if blocks or spans else text


def strip_lua(code: str) -> str:
    """Comments removed, string literals emptied (`""`), so text inside them is never read as a call."""
    return _NOISE.sub(lambda m: " " if m.group(0).startswith("--") else '""', code)


def _left_out(name: str, api: ApiIndex) -> bool:
    """Keywords and `self.` calls always; standard-library names only when the documents do not list them."""
    root = name.split(".")[0]
    if name in LUA_KEYWORDS or root == "self":
        return True
    builtin = name in LUA_GLOBALS or ("." in name and root in LUA_LIBRARIES)
    return builtin and not api.known(name)


def unit_of(name: str) -> str:
    """`Class:m` -> `:m` (a method is matched by its name); other names stay as they are."""
    return ":" + name.split(":")[1] if ":" in name else name


def extract_calls(text: str, api: ApiIndex) -> set[str]:
    """The API units an answer uses (see the module docstring for the exact rules)."""
    code = strip_lua(code_of(text))
    defined = {unit_of(m.group(1) or m.group(2)) for m in _DEFINITION.finditer(code)}
    units = defined & api.callbacks           # callbacks are used by defining them
    defined -= api.callbacks
    units |= {m.group(1) for m in _CALL.finditer(code) if not _left_out(m.group(1), api) and m.group(1) not in defined}
    units |= {":" + m.group(1) for m in _METHOD.finditer(code)
              if ":" + m.group(1) not in defined
              and (m.group(1) not in STRING_METHODS or ":" + m.group(1) in api.methods)}
    return units


# --- the metric -----------------------------------------------------------------------------------------

def api_match(outputs: Sequence[str], references: Sequence[str | None], api: ApiIndex) -> dict:
    """The metrics of the module docstring for answers and their reference answers (same order; None: no reference)."""
    extracted = known = invented_answers = no_call = 0
    hit = ref_total = with_reference = 0
    for output, reference in zip(outputs, references, strict=True):
        units = extract_calls(output, api)
        good = {u for u in units if api.known(u)}
        extracted += len(units)
        known += len(good)
        invented_answers += len(units) > len(good)
        no_call += not units
        if reference is not None and reference.strip():
            ref_units = {u for u in extract_calls(reference, api) if api.known(u)}
            with_reference += 1
            hit += len(good & ref_units)
            ref_total += len(ref_units)
    n = len(outputs)
    out: dict = {}
    precision = known / extracted if extracted else None
    recall = hit / ref_total if ref_total else None
    if precision is not None:
        out["api_match_precision"] = round(precision, 4)
    if recall is not None:
        out["api_match_recall"] = round(recall, 4)
        # recall > 0 needs a known unit, so precision is defined and > 0 whenever the ratio is taken
        out["api_match_f1"] = round(2 * precision * recall / (precision + recall), 4) if recall else 0.0
    if precision is not None:
        out["api_invented_rate"] = round((extracted - known) / extracted, 4)
    out.update({"api_no_call_rate": round(no_call / n, 4) if n else 0.0,
                "api_answers_with_invented": round(invented_answers / n, 4) if n else 0.0,
                "api_calls_per_answer": round(extracted / n, 4) if n else 0.0, "api_prompts": n,
                "api_prompts_with_reference": with_reference})
    return out


def score_api_predictions(api: ApiIndex, prompts: Sequence[dict], predictions: Sequence[dict], source: str) -> dict:
    """api_match of one model's answers ({"id", "output"}) to the prompt set ({"id", "prompt", "reference"?})."""
    refs = {p["id"]: p.get("reference") for p in prompts}
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
