"""API-grounded code data (the luacoder seed): API documents -> "write code that ..." chat records.

luacoder fine-tunes a code model on snippets that call a documented API, so that the model calls
the functions that exist instead of inventing plausible ones. This generator reads the same API
documents the API-match metric reads (`{"functions"|"apis": [{name, signature, doc?, kind?}]}`,
one JSON file or a folder) and writes chat records: the user asks for a task in the words of a
function's doc ("Create a movable window. Use the Moonlit UI Lua API."), the assistant answers
with a fenced Lua snippet that calls it, inside the game-loop callback where it belongs
(drawing in `game.draw`, input in `game.update`, the rest in `game.load`). A method
(`Window:add`) is called on an object made by the function that returns its type. First one
record per function, then pairs of functions that share a callback, up to `n_records`. With
`text_records`, each snippet is also a content-only `text` record (the code as a Lua file), for
continued pretraining on the API's code as luacoder does (`format.template: text`).

The template teacher writes the snippets by rule from the signatures (argument values chosen by
parameter name and type). An LLM teacher writes them from the task and the document listing; an
answer that does not call the function asked for, after `reasks` re-asks, keeps the rule snippet
with `meta.voiced: false` and the reason, as the dialogue voicing does.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from synthtune.core.errors import InputError
from synthtune.core.records import record_id

WRAPPER = {"gfx": "draw", "input": "update"}        # module -> the callback its calls belong in (else load)
NUMBERS = {"x": "100", "y": "80", "w": "120", "h": "40", "r": "1", "g": "0.5", "b": "0.2", "a": "1",
           "radius": "24", "size": "18", "seconds": "2", "volume": "0.5", "min": "0", "max": "100",
           "value": "50", "button": "1", "dt": "dt", "x1": "10", "y1": "10", "x2": "200", "y2": "120",
           "ox": "16", "oy": "16", "rotation": "0", "scale": "2", "index": "1"}
STRINGS = {"path": "player.png", "key": "space", "text": "Score: 0", "title": "Settings", "label": "Start",
           "message": "Saved!", "placeholder": "Your name", "name": "dark"}
VERB_EXCEPTIONS = {"Seconds", "Is", "Has", "Was"}


@dataclass(frozen=True)
class ApiFunction:
    name: str
    signature: str
    doc: str
    library: str
    returns: str | None


def read_api_functions(path: Path) -> list[ApiFunction]:
    """Every documented function and method (callbacks excluded) of one JSON file or a folder of them."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise InputError(f"{path}: no API documents (*.json) found")
    out = []
    for file in files:
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{file}: API document is not valid UTF-8 JSON ({exc})") from None
        entries = [e for key in ("functions", "apis") for e in (doc.get(key) or [] if isinstance(doc, dict) else [])]
        if not entries:
            raise InputError(f'{file}: no "functions" or "apis" list of {{name, signature}} entries')
        library = doc.get("library") or file.stem
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or \
                    not isinstance(entry.get("signature"), str):
                raise InputError(f"{file}: entry {i}: needs string \"name\" and \"signature\"")
            if entry.get("kind") == "callback":
                continue
            ret = entry["signature"].partition("->")[2].strip() or None
            out.append(ApiFunction(entry["name"], entry["signature"], entry.get("doc") or "", library, ret))
    return out


def _params(signature: str) -> list[tuple[str, str]]:
    """[(name, type)] of the required parameters (optional `a?:` ones are left out)."""
    inside, depth, start = "", 0, signature.find("(")
    for ch in signature[start + 1:]:
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        inside += ch
    parts, depth, cur = [], 0, ""
    for ch in inside:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for part in (p.strip() for p in parts if p.strip()):
        name, _, kind = part.partition(":")
        if not name.strip().endswith("?"):
            out.append((name.strip(), kind.strip()))
    return out


PRIMITIVE = re.compile(r'^(number|string|boolean|table|any|function.*|".*)$')


def _value(name: str, kind: str, objects: dict[str, str], makers: dict[str, ApiFunction]) -> str:
    """An example argument for a parameter, by its type and name; an object type is made inline."""
    if kind.startswith('"'):
        return kind.split("|")[0]                           # a literal union: its first member
    if kind == "number":
        return NUMBERS.get(name, "10")
    if kind == "string":
        return json.dumps(STRINGS.get(name, name))
    if kind == "boolean":
        return "true"
    if kind.startswith("function"):
        inner = kind[kind.find("(") + 1:kind.rfind(")")] if "(" in kind else ""
        args = ", ".join(n.strip().split(":")[0] for n in inner.split(",") if n.strip())
        return f"function({args}) end" if args else 'function() ui.alert("Done!") end'
    if kind == "table":
        return '{"easy", "normal", "hard"}'
    if kind in objects:
        return objects[kind]
    if kind in makers:
        maker = makers[kind]
        return f"{maker.name}({', '.join(_value(n, t, objects, makers) for n, t in _params(maker.signature))})"
    return "nil"


def _callable(fn: ApiFunction, makers: dict[str, ApiFunction]) -> bool:
    """Every required argument can be written (an object type needs a documented maker)."""
    kinds = [t for _, t in _params(fn.signature)]
    if ":" in fn.name:
        kinds.append(fn.name.split(":")[0])
    return all(PRIMITIVE.match(t) or t in makers for t in kinds)


def task_of(fn: ApiFunction) -> str:
    """The doc as an instruction: "Creates a movable window." -> "create a movable window"."""
    text = fn.doc.strip().rstrip(".") or f"call {fn.name}"
    first, _, rest = text.partition(" ")
    if first.endswith("s") and first not in VERB_EXCEPTIONS:
        first = first[:-2] if first.endswith(("ches", "shes", "sses", "xes")) else first[:-1]
        return f"{first.lower()} {rest}".strip()
    return f"get {text[0].lower()}{text[1:]}" if fn.returns else f"{text[0].lower()}{text[1:]}"


def _wrapper(fn: ApiFunction, makers: dict[str, ApiFunction]) -> str:
    module = fn.name.split(".")[0] if "." in fn.name else None
    if module is None:                                      # a method: where its object's module belongs
        maker = makers.get(fn.name.split(":")[0])
        module = maker.name.split(".")[0] if maker else None
    return WRAPPER.get(module or "", "load")


def snippet(fns: list[ApiFunction], makers: dict[str, ApiFunction]) -> str:
    """A fenced Lua snippet calling every function of `fns` in its callback (methods on made objects)."""
    setup, body, objects = [], [], {}
    for fn in fns:
        args = lambda f: ", ".join(_value(n, t, objects, makers) for n, t in _params(f.signature))  # noqa: E731
        if ":" in fn.name:
            kind, method = fn.name.split(":")
            if kind not in objects:
                var = kind[0].lower() + kind[1:]
                setup.append(f"{var} = {makers[kind].name}({args(makers[kind])})")
                objects[kind] = var
            call = f"{objects[kind]}:{method}({args(fn)})"
        else:
            call = f"{fn.name}({args(fn)})"
        body.append(f"local result = {call}" if fn.returns and "," not in fn.returns else call)
    where = _wrapper(fns[0], makers)
    indent = lambda lines: [f"  {line}" for line in lines]  # noqa: E731
    head = [f"local {', '.join(objects.values())}", ""] if objects else []
    if where == "load":
        lines = head + ["function game.load()", *indent(setup + body), "end"]
    else:
        load = ["function game.load()", *indent(setup), "end", ""] if setup else []
        lines = head + load + [f"function game.{where}({'dt' if where == 'update' else ''})", *indent(body), "end"]
    return "```lua\n" + "\n".join(lines) + "\n```"


def _prompt(fns: list[ApiFunction]) -> str:
    tasks = [task_of(f) for f in fns]
    task = tasks[0] if len(tasks) == 1 else ", then ".join(tasks)
    return f"{task[0].upper()}{task[1:]}. Use the {fns[0].library} Lua API."


def api_code_records(name: str, domain: str, functions: list[ApiFunction], n_records: int, seed: int) -> list[dict]:
    """Rule-written records: one per function, then seeded pairs sharing a callback, `n_records` in all."""
    makers = {f.returns: f for f in functions if f.returns and f.returns[:1].isupper() and "." in f.name}
    usable = [f for f in functions if _callable(f, makers)]
    groups = [[f] for f in usable]
    rng = random.Random(f"{name}:{seed}")
    by_wrapper: dict[str, list[ApiFunction]] = {}
    for f in usable:
        by_wrapper.setdefault(_wrapper(f, makers), []).append(f)
    pairs = [[a, b] for fs in by_wrapper.values() for i, a in enumerate(fs) for b in fs[i + 1:]]
    rng.shuffle(pairs)
    groups = (groups + pairs)[:n_records]
    records = []
    for i, fns in enumerate(groups):
        messages = [{"role": "user", "content": _prompt(fns)}, {"role": "assistant", "content": snippet(fns, makers)}]
        record = {"source": name, "domain": domain, "group": f"{name}-{'+'.join(f.name for f in fns)}",
                  "messages": messages, "meta": {"functions": [f.name for f in fns], "library": fns[0].library,
                                                 "generator": "template"}}
        record["id"] = record_id(record)
        records.append(record)
    return records


def code_of(answer: str) -> str:
    """The Lua source inside an answer's first fenced block (the answer itself when it has none)."""
    match = re.search(r"```[A-Za-z]*\n(.*?)```", answer, re.S)
    return (match.group(1) if match else answer).strip() + "\n"


def text_records(records: list[dict]) -> list[dict]:
    """Each chat record's snippet as a content-only `text` record: the code as a Lua file, headed by
    its task as a comment (code corpora document what a file does). It shares the chat record's
    `group`, so both land in the same split: a test snippet never leaks into train as text."""
    out = []
    for record in records:
        task = record["messages"][0]["content"]
        text = f"-- {task}\n" + code_of(record["messages"][1]["content"])
        new = {"source": record["source"], "domain": record["domain"], "group": record["group"], "text": text,
               "meta": {**record["meta"], "layout": "text"}}
        new["id"] = record_id(new)
        out.append(new)
    return out


CODE_SYSTEM = ("You write short Lua snippets for the {library} API. Call only these documented functions:\n"
               "{listing}\nAnswer with one ```lua code block and nothing else.")


def _calls_all(text: str, names: list[str]) -> str | None:
    """Why an LLM snippet is unusable: no code block, or a function it was asked for is not called."""
    if "```" not in (text or ""):
        return "no code block"
    missing = [n for n in names if (":" + n.split(":")[1] if ":" in n else n) + "(" not in text]
    return f"does not call {', '.join(missing)}" if missing else None


def voice_api_code(records: list[dict], functions: list[ApiFunction], teacher, request_cls,
                   reasks: int) -> list[dict]:
    """The teacher writes each record's snippet; unusable after `reasks` re-asks: the rule snippet stays."""
    listing = {}
    for f in functions:
        listing.setdefault(f.library, []).append(f"- {f.signature}: {f.doc}")
    base = [request_cls(messages=[{"role": "system", "content": CODE_SYSTEM.format(
        library=r["meta"]["library"], listing="\n".join(listing[r["meta"]["library"]]))},
        {"role": "user", "content": r["messages"][0]["content"]}], temperature=0.2, max_tokens=256,
        meta={"template": r["messages"][1]["content"]}) for r in records]
    texts, why = [None] * len(records), [None] * len(records)
    todo = list(range(len(records)))
    for attempt in range(reasks + 1):
        wave = [request_cls(messages=base[i].messages, temperature=max(0.2, 0.7 * (attempt > 0)), max_tokens=256,
                            sample=attempt, meta=base[i].meta) for i in todo]
        for i, response in zip(todo, teacher.complete(wave, offline=lambda r: r.meta["template"])):
            why[i] = response.error if not response.ok else _calls_all(response.text, records[i]["meta"]["functions"])
            if why[i] is None:
                texts[i] = response.text.strip()
        todo = [i for i in todo if texts[i] is None]
        if not todo:
            break
    out = []
    for record, text, reason in zip(records, texts, why):
        messages = [record["messages"][0], {"role": "assistant", "content": text or record["messages"][1]["content"]}]
        meta = {**record["meta"], "generator": getattr(teacher, "backend", "teacher"),
                "teacher_model": getattr(teacher, "model", None), "voiced": text is not None,
                **({} if text is not None else {"fallback_reason": reason})}
        new = {**record, "messages": messages, "meta": meta}
        new["id"] = record_id({k: v for k, v in new.items() if k != "id"})
        out.append(new)
    return out
