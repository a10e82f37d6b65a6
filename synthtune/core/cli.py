"""Entry-point plumbing shared by every stage: logging and the one-line error contract."""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from synthtune.core.errors import UserError


def configure_logging() -> None:
    level = os.environ.get("LOGLEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)


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
