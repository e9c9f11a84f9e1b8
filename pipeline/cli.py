"""Shared entry-point wrapper: user mistakes end in one clear line, not a traceback."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Callable

from pipeline.config import ConfigError
from pipeline.io import unwritable_reason

#: How torch's DataLoader re-raises a worker's exception: the type is kept, but the message becomes
#: this header and the worker's whole traceback, whose last line is ``<module>.<type>: <message>``.
_WORKER_HEADER = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


class UserError(Exception):
    """A problem with the user's data or arguments; the message names the file/key and the fault.

    Subclasses must take the message as their only required argument: that is how torch's
    DataLoader rebuilds an exception raised in a worker (anything else becomes a RuntimeError).
    """


def require_writable(folder: Path, flag: str = "--out") -> None:
    """A :class:`UserError` naming ``flag`` when ``folder`` cannot take files. Called before the
    work: a run that cannot save its results should not spend time on them."""
    reason = unwritable_reason(folder)
    if reason is not None:
        raise UserError(f"{folder}: {flag} cannot be written ({reason})")


def user_message(exc: BaseException) -> str:
    """``exc``'s message; for one re-raised from a DataLoader worker, the worker's original message."""
    text = str(exc)
    if not _WORKER_HEADER.match(text):
        return text
    marker = f"\n{type(exc).__module__}.{type(exc).__qualname__}: "
    start = text.rfind(marker)
    return text[start + len(marker):].strip() if start >= 0 else text


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's ``main()``; print user errors as ``error: ...`` and exit with status 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except (ConfigError, UserError) as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        sys.exit(2)
