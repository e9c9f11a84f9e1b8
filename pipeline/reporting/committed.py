"""The metrics the current ones replaced, from git history, and what changed (as ``dvc metrics diff``).

The base is the newest commit, from HEAD back, whose metrics file differs from the working copy's
(:func:`find_base`): before a commit that is HEAD's version, and in a clone of that commit the same
older one, so the report reads the same in both. Read with plain ``git``: the report runs inside
``dvc repro``, which holds the repository lock, so calling ``dvc`` from here would deadlock or fail.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

DIFF_COLUMNS = ["metric", "old", "new", "change"]


@dataclass(frozen=True)
class Base:
    """A commit's version of the metrics: its sha, subject line and the parsed file."""

    commit: str
    subject: str
    metrics: dict[str, Any]

    @property
    def short(self) -> str:
        return self.commit[:10]


def _git(root: Path, *args: str) -> str | None:
    """stdout of ``git args`` in ``root``, or None when git fails or is missing."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("git unavailable (%s)", exc)
        return None
    return done.stdout if done.returncode == 0 else None


def _relative(root: Path, file: Path) -> str:
    return Path(file).resolve().relative_to(Path(root).resolve()).as_posix()


def show_file(root: Path, commit: str, file: Path) -> str | None:
    """The text of ``file`` (below ``root``) at ``commit``, or None when it is not there."""
    # "./" makes the path relative to cwd, so a root below the repository's top works too
    return _git(root, "show", f"{commit}:./{_relative(root, file)}")


def find_base(root: Path, file: Path, current: dict[str, Any]) -> Base | None:
    """The newest commit (from HEAD back, among those that changed ``file``) whose ``file`` parses
    to something other than ``current``; None without git history or without such a commit."""
    listing = _git(root, "log", "--format=%H%x09%s", "--", f"./{_relative(root, file)}")
    for line in (listing or "").splitlines():
        commit, _, subject = line.partition("\t")
        text = show_file(root, commit, file)
        try:
            data = json.loads(text) if text is not None else None
        except ValueError:
            continue
        if isinstance(data, dict) and data != current:
            return Base(commit, subject, data)
    return None


def read_committed(root: Path, file: Path) -> dict[str, Any] | None:
    """``file`` as committed at HEAD of the git repository holding ``root``, or None.

    None when there is no git (binary or repository), no commit yet, the file is not committed,
    or the committed text is not a JSON object.
    """
    rel = Path(file).resolve().relative_to(Path(root).resolve()).as_posix()
    try:
        # "./" makes the path relative to cwd, so a root below the repository's top works too
        shown = subprocess.run(
            ["git", "show", f"HEAD:./{rel}"], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.info("no committed %s: git unavailable (%s)", rel, exc)
        return None
    if shown.returncode != 0:
        log.info("no committed %s: %s", rel, shown.stderr.strip().splitlines()[-1:] or "git show failed")
        return None
    try:
        data = json.loads(shown.stdout)
    except ValueError:
        log.warning("committed %s is not valid JSON; not compared", rel)
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any) -> float | int | None:
    """Numbers as they are, undefined (null, NaN, inf, text) as None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def metrics_diff(old: dict[str, Any], new: dict[str, Any], order: list[str] | None = None) -> pd.DataFrame:
    """One row per metric whose value changed (added and removed ones too; values equal to 1e-9
    relative count as unchanged): metric, old, new, change.

    ``change`` is ``new - old`` when both are numbers, else None; text values (``inference_dtype``)
    are shown as they are. Rows follow ``order`` first, then
    the remaining keys sorted, so the table is the same on every run.
    """
    keys = set(old) | set(new)
    ordered = [k for k in (order or []) if k in keys] + sorted(keys - set(order or []))
    rows = []
    for key in ordered:
        if isinstance(old.get(key), str) or isinstance(new.get(key), str):  # a setting such as inference_dtype
            if old.get(key) != new.get(key):
                rows.append({"metric": key, "old": old.get(key), "new": new.get(key), "change": None})
            continue
        a, b = _number(old.get(key)), _number(new.get(key))
        same = a == b or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12))
        if same and (key in old) == (key in new):
            continue  # float round-off (another summation order) is not a change
        change = b - a if a is not None and b is not None else None
        rows.append({"metric": key, "old": a, "new": b, "change": change})
    # object dtype keeps integer counts (frames) integers next to float metrics
    return pd.DataFrame(rows, columns=DIFF_COLUMNS, dtype=object)
