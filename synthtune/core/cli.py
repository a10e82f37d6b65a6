"""Entry-point plumbing shared by every stage: argument parsing, params, logging, the one-line error contract.

A stage script is `main(argv)` calling `stage(__doc__, argv, "path", ...)` for its paths and params, and
`run_stage(main)` under `if __name__ == "__main__"`; nothing else about the command line is repeated.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from synthtune.core.errors import UserError


def configure_logging() -> None:
    level = os.environ.get("LOGLEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)


def stage(doc: str, argv: Sequence[str] | None, *paths: str | tuple[str, type],
          options: Callable[[argparse.ArgumentParser], None] | None = None):
    """Parse a stage's command line and load its params: returns (args, params).

    `paths` are the positional arguments in the order of the stage's `cmd` in dvc.yaml (paths come
    from there only); each is a Path unless given as `(name, type)`. `--params` (default params.yaml)
    is always there; `options` adds the stage's own flags. The description is the docstring's first line.
    """
    from synthtune.core.config import load_params

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    for spec in paths:
        name, kind = spec if isinstance(spec, tuple) else (spec, Path)
        parser.add_argument(name, type=kind)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    if options is not None:
        options(parser)
    args = parser.parse_args(argv)
    return args, load_params(args.params)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a UserError ends with one line on stderr and exit code 2.

    Set LOGLEVEL=DEBUG (or pass --debug) to get the traceback as well.
    """
    debug = os.environ.get("LOGLEVEL", "").upper() == "DEBUG" or "--debug" in sys.argv
    if "--debug" in sys.argv:
        sys.argv.remove("--debug")
    configure_logging()
    try:
        main()
    except UserError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
