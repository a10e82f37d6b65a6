"""One thin script per DVC stage: parse paths, load params, call lib, write outputs.

Importing this package pins the offline defaults for every entry point: no stage ever waits
on the Hugging Face hub unless the user sets HF_HUB_OFFLINE=0 explicitly (real hub runs).

It also stops a stage started by the wrong Python at once. A `dvc` installed outside the
virtualenv (globally, with pipx) runs each stage's `python -m stages.<name>` with whatever
`python` comes first on PATH; that one lacks torch, and the stage used to die with a
ModuleNotFoundError traceback deep in its imports (after DVC had already removed its outputs).
"""
import importlib.util
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# Top-level import names the stages need (requirements.txt): checked with find_spec, which reads
# no module, so `--help` stays fast and imports no torch. `dvc` itself is not here: a stage never
# imports it, and a Python that has these runs every stage whichever dvc started it.
REQUIRED = ("torch", "transformers", "trl", "peft", "datasets", "sklearn", "numpy", "pydantic", "yaml", "dvclive",
            "synthtune")
FIX = ("run DVC from the project's virtualenv: source .venv/bin/activate, then dvc repro (or make repro, which "
       "creates it; by hand: python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt "
       "&& .venv/bin/pip install --no-deps -e .)")


def missing_modules(names=REQUIRED, find_spec=importlib.util.find_spec) -> list[str]:
    """The names this Python cannot import. A name that errors while being looked up counts as missing,
    and so does a bare folder of that name: run from the repo root, the `dvclive/` output folder is a
    namespace package `dvclive` (origin None) to find_spec, and no real package here is one."""
    missing = []
    for name in names:
        try:
            spec = find_spec(name)
        except (ImportError, ValueError):   # ValueError: a module whose __spec__ is None
            spec = None
        if spec is None or spec.origin is None:
            missing.append(name)
    return missing


def check_interpreter(find_spec=importlib.util.find_spec) -> None:
    """Exit 2 with one line naming the missing packages and the fix, before any stage module imports them."""
    missing = missing_modules(REQUIRED, find_spec)
    if missing:
        print(f"error: this Python ({sys.executable}) lacks {', '.join(missing)}: {FIX}", file=sys.stderr)
        raise SystemExit(2)


check_interpreter()
