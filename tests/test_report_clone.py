"""A clone of this repository, without the MLflow store, regenerates the committed report byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=300).stdout


def test_fresh_clone_regenerates_the_committed_report(tmp_path):
    try:
        head = _git("rev-parse", "HEAD", cwd=REPO).strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    _git("clone", "-q", "--no-checkout", str(REPO), str(clone), cwd=tmp_path)
    _git("-c", "advice.detachedHead=false", "checkout", "-q", head, cwd=clone)
    assert not (clone / "mlflow.db").exists()
    committed = {p.relative_to(clone): p.read_bytes() for p in [clone / "reports/metrics.md",
                                                                  *sorted((clone / "reports/figures").iterdir())]}
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-m", "pipeline.report"], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (clone / "mlflow.db").exists()  # reading must not create a store
    regenerated = {p.relative_to(clone): p.read_bytes() for p in [clone / "reports/metrics.md",
                                                                    *sorted((clone / "reports/figures").iterdir())]}
    assert regenerated.keys() == committed.keys()
    for path in committed:
        assert regenerated[path] == committed[path], (
            f"{path} differs from the committed one: regenerate it with `python -m pipeline.export_runs` "
            "(where the runs are) and `python -m pipeline.report`, and commit both")
