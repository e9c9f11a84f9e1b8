"""Shared entry-point wrapper: user mistakes end in one clear line, not a traceback."""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
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


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (``kill``, DVC, a queue or a scheduler stopping it)."""


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(f"terminated by signal {signum}")


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread, so a stage stopped
    by ``kill`` unwinds like one stopped by Ctrl-C and can close what it has open. Does nothing
    outside the main thread or where SIGTERM already has a handler of its own."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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


def stage_parser(doc: str | None, prog: str, epilog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser whose ``--help`` prints ``doc`` (a module docstring: what the command
    reads and writes) as written: its first paragraph above the options, the rest (and
    ``epilog``) below them."""
    summary, _, details = (doc or "").strip().partition("\n\n")
    after = "\n\n".join(part for part in (details.strip(), epilog) if part)
    return argparse.ArgumentParser(prog=prog, description=summary, epilog=after or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def stage_help(doc: str, prog: str, argv: Sequence[str] | None = None) -> None:
    """Command line of a stage that takes no options: ``--help`` prints ``doc`` (what the stage
    reads and writes) and exits 0 without running it; anything else is a usage error (status 2)."""
    stage_parser(doc, prog).parse_args(argv)


def run_stage(main: Callable[[], None], doc: str | None = None) -> None:
    """Run a stage's ``main()``; print user errors as ``error: ...`` and exit with status 2.

    A stage that fails ends the MLflow runs it has open as FAILED; one stopped by Ctrl-C or
    SIGTERM ends them as KILLED and exits with status 130 or 143.

    ``doc``: the module docstring of a stage without options of its own; its command line then
    answers ``--help`` (:func:`stage_help`) before anything runs.
    """
    from pipeline.engine.tracking import end_open_runs  # psutil, mlflow's plumbing: only for stages

    if doc is not None:
        stage_help(doc, f"python -m {_main_module()}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with sigterm_raises():
            main()
    except (ConfigError, UserError) as exc:
        end_open_runs("FAILED")
        print(f"error: {user_message(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated)
        end_open_runs("KILLED")
        print(f"interrupted: {exc or 'Ctrl-C'}", file=sys.stderr)
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    except SystemExit as exc:
        if exc.code not in (0, None):
            end_open_runs("FAILED")
        raise
    except BaseException:
        end_open_runs("FAILED")
        raise


def _main_module() -> str:
    """The dotted name ``python -m`` ran (``pipeline.train``), or the script's name."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).name
