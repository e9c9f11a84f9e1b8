"""Build a throw-away git + DVC repository holding this project, with tiny params, for end-to-end tests."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

#: Small enough that prepare + resize + a 1-epoch train take seconds on 2 CPU cores.
TINY_PARAMS: dict[str, Any] = {
    "data": {
        "demo": {"train_objects": 3, "val_objects": 2, "sequences_per_object": 1, "frames_per_sequence": 3,
                 "template_size": 128, "distractors": 1},
    },
    "templates": {"size": 32, "workers": 1},
    "model": {"neck": {"channels": 16}, "head": {"channels": 16}, "search_size": [256, 144], "correlation": {"kernel": 1}},
    "train": {"epochs": 1, "batch_size": 2, "workers": 0, "crop_size": 64, "log_every": 1, "lr": 0.001},
}

GIT_ENV = {
    "GIT_AUTHOR_NAME": "needle tests", "GIT_AUTHOR_EMAIL": "tests@needle.invalid",
    "GIT_COMMITTER_NAME": "needle tests", "GIT_COMMITTER_EMAIL": "tests@needle.invalid",
}


def deep_update(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def env() -> dict[str, str]:
    """Environment for subprocesses: the project importable, git identity, no MLflow server."""
    e = {**os.environ, **GIT_ENV, "PYTHONUNBUFFERED": "1", "DVC_NO_ANALYTICS": "1"}
    e.pop("MLFLOW_TRACKING_URI", None)
    return e


def run(cmd: list[str], cwd: Path, check: bool = True, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env={**env(), **(extra_env or {})}, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def make_pipeline_repo(root: Path, overrides: dict | None = None) -> Path:
    """Copy the project (code, dvc.yaml, params) into ``root``, apply tiny params, git+dvc init, commit."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    (root / "reports").mkdir()
    (root / "reports" / "runs.csv").write_text("run_id,key,value\n")  # the report's committed run table, no runs yet
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params = deep_update(deep_update(params, TINY_PARAMS), overrides or {})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], root)
    run([sys.executable, "-m", "dvc", "init", "-q"], root)
    run([sys.executable, "-m", "dvc", "config", "core.autostage", "true"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "init"], root)
    return root


def dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], root, check=check)


def set_params(root: Path, overrides: dict) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(deep_update(params, overrides), sort_keys=False))
