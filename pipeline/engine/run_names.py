"""Where a run comes from (git commit, dirty tree, DVC experiment) and the MLflow run name made of it.

MLflow's own names (``overjoyed-slug-911``) come from Python's ``random``, which training seeds
before the run starts, so every run with one seed would get the same name; these names never use
``random``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

#: Changed params are spelled out in the name (``train.lr=0.01``) while they fit in this many
#: characters; beyond, a digest of all params stands for them.
MAX_CHANGES_CHARS = 48


def git_commit(cwd: Path | None = None) -> str | None:
    """The checked-out commit (None: not a git checkout)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_dirty(cwd: Path | None = None) -> bool | None:
    """Whether the work tree has uncommitted changes to tracked files (None: not a git checkout)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                             capture_output=True, text=True, check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.strip())


def committed_params(params_file: Path) -> dict[str, Any] | None:
    """The flat params (``to_flat_dict``) of ``params_file`` as the commit checked out holds it;
    None when there is none or it no longer parses (e.g. a key renamed since)."""
    from pipeline.config import ConfigError, parse_params, read_yaml, to_flat_dict

    params_file = Path(params_file)
    try:
        text = subprocess.run(["git", "show", f"HEAD:./{params_file.name}"], cwd=params_file.parent or None,
                              capture_output=True, text=True, check=True, timeout=10).stdout
        return to_flat_dict(parse_params(read_yaml(text)))
    except (OSError, subprocess.SubprocessError, ConfigError, ValueError):
        return None


def changed_params(params: dict[str, Any], committed: dict[str, Any] | None) -> dict[str, Any]:
    """The entries of ``params`` whose value differs from ``committed`` (sorted by key)."""
    if committed is None:
        return {}
    return {k: params[k] for k in sorted(params) if committed.get(k, object()) != params[k]}


def dvc_tags(cwd: Path | None = None) -> dict[str, str | None]:
    """Where a run comes from: commit, uncommitted changes, DVC experiment (None: unknown)."""
    dirty = git_dirty(cwd)
    return {
        "git_commit": git_commit(cwd),
        "git_dirty": None if dirty is None else str(dirty).lower(),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME"),
        "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV"),
    }


def params_digest(params: dict[str, Any]) -> str:
    """Six hex digits that change with any param."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:6]


def run_name(params: dict[str, Any], tags: dict[str, str | None], changed: dict[str, Any] | None = None) -> str:
    """The MLflow run name.

    DVC's experiment name when DVC runs one, so MLflow and DVC agree; else
    ``<commit>[-dirty]-<changes>`` where ``<changes>`` names the params that differ from the
    commit's params file (``3f2a9c1-dirty-train.lr=0.01``) while they are short, else a digest of
    all params (``3f2a9c1-dirty-5e0b7d``). Outside git, ``run-<digest>-<UTC time>``.
    ``tags``: :func:`dvc_tags`; ``changed``: :func:`changed_params`.
    """
    if tags.get("dvc_exp_name"):
        return str(tags["dvc_exp_name"])
    digest = params_digest(params)
    if not tags.get("git_commit"):
        return f"run-{digest}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    spelled = ",".join(f"{k}={_short(v)}" for k, v in (changed or {}).items())
    suffix = spelled if spelled and len(spelled) <= MAX_CHANGES_CHARS else digest
    dirty = "-dirty" if tags.get("git_dirty") == "true" else ""
    return f"{str(tags['git_commit'])[:7]}{dirty}-{suffix}"


def _short(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)
