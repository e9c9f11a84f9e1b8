"""User errors end in one line, also when they are raised in a DataLoader worker."""

from __future__ import annotations

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


@pytest.mark.parametrize("stage", ["prepare", "resize_templates", "train", "baseline", "report"])
def test_stages_answer_help_without_running(stage: str, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run([sys.executable, "-m", f"pipeline.{stage}", "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: python -m pipeline.{stage} [-h]")
    assert f"Stage ``{stage}``" in run.stdout and "rite" in run.stdout  # what it reads and writes
    assert list(tmp_path.iterdir()) == []  # nothing ran: no params.yaml read, nothing written
    bad = subprocess.run([sys.executable, "-m", f"pipeline.{stage}", "--bogus"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr
    assert list(tmp_path.iterdir()) == []
