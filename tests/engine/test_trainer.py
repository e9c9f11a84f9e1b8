"""The trainer under a kill -9 in the middle of a checkpoint write: real tiny runs, real files."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch

from tests.pipeline_repo import dvc, make_pipeline_repo, run

pytestmark = pytest.mark.slow

#: ``python die_in_write.py NAME N``: the train stage, dying (like kill -9: no cleanup, no finally)
#: with the temp file half written in the N-th atomic checkpoint write of models/NAME.
DIE_IN_WRITE = """
import os, sys
from contextlib import contextmanager
from pathlib import Path

import pipeline.engine.checkpoint as checkpoint
from pipeline.io import atomic_path

name, nth = sys.argv[1], int(sys.argv[2])
seen = 0


@contextmanager
def dying_atomic_path(path):
    global seen
    with atomic_path(path) as tmp:
        yield tmp
        if Path(path).name == name:
            seen += 1
            if seen == nth:
                data = tmp.read_bytes()
                tmp.write_bytes(data[: len(data) // 2])
                os._exit(9)


checkpoint.atomic_path = dying_atomic_path
from pipeline.cli import run_stage
from pipeline.train import main

run_stage(main)
"""


@pytest.fixture(scope="module")
def data_repo(tmp_path_factory):
    """A repo whose two data stages have run, set for 3 epochs validated after each."""
    root = make_pipeline_repo(tmp_path_factory.mktemp("trainer") / "base", {"train": {"epochs": 3, "val_every": 1}})
    dvc(root, "repro", "resize_templates")
    (root / "die_in_write.py").write_text(DIE_IN_WRITE)
    return root


def _copy(data_repo, dst):
    shutil.copytree(data_repo, dst, symlinks=True)
    return dst


def _train(root):
    return run([sys.executable, "-m", "pipeline.train"], root)


@pytest.fixture(scope="module")
def straight(data_repo, tmp_path_factory):
    """The same run, never interrupted."""
    root = _copy(data_repo, tmp_path_factory.mktemp("straight") / "repo")
    _train(root)
    return root


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _metrics(root) -> dict:
    return json.loads((root / "reports/train_metrics.json").read_text())


def _improving_epochs(history: list[dict]) -> list[int]:
    """The epochs that wrote best.pt: each validated one that beat every earlier one."""
    out, best = [], None
    for row in history:
        if "val_AP50" in row and (best is None or row["val_AP50"] > best):
            best = row["val_AP50"]
            out.append(row["epoch"])
    return out


@pytest.mark.parametrize("die_in", ["best.pt", "last.pt"])
def test_kill_in_a_checkpoint_write_resumes_to_the_best_of_an_uninterrupted_run(data_repo, straight, tmp_path, die_in):
    metrics = _metrics(straight)
    best_epoch = metrics["best"]["epoch"]
    # The write of the best epoch's best.pt, or of its last.pt (one per epoch).
    history = _state(straight / "models/last.pt")["history"]
    nth = _improving_epochs(history).index(best_epoch) + 1 if die_in == "best.pt" else best_epoch + 1
    root = _copy(data_repo, tmp_path / "repo")
    killed = run([sys.executable, "die_in_write.py", die_in, str(nth)], root, check=False)
    assert killed.returncode == 9, killed.stderr[-3000:]
    assert list((root / "models").glob(f".{die_in}.*.tmp"))  # the half-written temp file is left

    _train(root)
    expected, got = _state(straight / "models/best.pt"), _state(root / "models/best.pt")
    assert got["epoch"] == got["best"]["epoch"] == _metrics(root)["best"]["epoch"] == best_epoch
    assert got["best"] == expected["best"]
    for key, tensor in expected["model"].items():
        torch.testing.assert_close(got["model"][key], tensor, rtol=0, atol=0, msg=key)
    assert not list((root / "models").glob(".*.tmp"))  # the killed write's leftover is gone
