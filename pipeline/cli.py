"""Shared entry-point wrapper: user mistakes end in one clear line, not a traceback."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from pipeline.config import ConfigError


class UserError(Exception):
    """A problem with the user's data or arguments; the message names the file/key and the fault."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main()``; print user errors as ``error: ...`` and exit with status 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (ConfigError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
