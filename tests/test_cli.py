"""User errors end in one line, also when they are raised in a DataLoader worker; every command
answers ``--help`` without running."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torch.utils.data import DataLoader, Dataset

from pipeline.cli import UserError, user_message


class _BrokenFrames(Dataset):
    """Two items; the second is a frame that cannot be read."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        if index == 1:
            raise UserError("data/prepared/demo/a.jpg: cannot read image (missing, unreadable or corrupt)")
        return index


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_errors_keep_their_one_line_message(workers: int):
    with pytest.raises(UserError) as err:
        list(DataLoader(_BrokenFrames(), batch_size=1, num_workers=workers))
    assert user_message(err.value) == "data/prepared/demo/a.jpg: cannot read image (missing, unreadable or corrupt)"


def test_other_messages_are_kept_whole():
    assert user_message(UserError("a.csv: line 3: Caught x\nmore")) == "a.csv: line 3: Caught x\nmore"


REPO = Path(__file__).resolve().parents[1]
#: Every stage of dvc.yaml, and the tools that are not stages.
COMMANDS = sorted({*re.findall(r"cmd: python -m pipeline\.(\w+)", (REPO / "dvc.yaml").read_text()),
                   "predict", "ablate", "export", "evaluate", "tune_temporal", "export_runs", "render_plots"})


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_answers_help_without_running(command: str, tmp_path):
    """In a folder with the project's params.yaml and dvc.yaml, where a stage that ignored
    ``--help`` would start working, ``--help`` prints what it reads and writes and changes nothing."""
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    before = _snapshot(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", f"pipeline.{command}", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: python -m pipeline.{command} [-h]")
    assert "writ" in run.stdout.lower() and len(run.stdout.splitlines()) > 5  # what it reads and writes
    assert _snapshot(tmp_path) == before  # nothing ran: nothing written, nothing touched
    bad = subprocess.run([sys.executable, "-m", f"pipeline.{command}", "--bogus"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2, bad.stderr
    assert "unrecognized arguments: --bogus" in bad.stderr or "arguments are required" in bad.stderr
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("module", sorted(p.stem for p in (REPO / "benchmarks").glob("*.py")
                                          if "__main__" in p.read_text() and p.stem != "__init__"))
def test_benchmarks_answer_help_without_running(module: str, tmp_path):
    before = _snapshot(tmp_path)
    run = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--help"], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: ") and "--help" in run.stdout
    assert _snapshot(tmp_path) == before
