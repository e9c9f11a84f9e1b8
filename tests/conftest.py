"""Shared fixtures: tiny real data sets in every supported layout (builders in tests/datasets.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.datasets import make_coco_dataset, make_cpn_dataset, make_refdet_dataset


@pytest.fixture
def cpn_root(tmp_path: Path) -> Path:
    """A cpn data set with train/val (objects 1-3 / 4-5, frames 0-2 and 10-11, frame 2 absent)."""
    return make_cpn_dataset(tmp_path / "cpn")


@pytest.fixture
def refdet_root(tmp_path: Path) -> Path:
    """A refdet data set shaped like :func:`cpn_root`, object ids obj1..obj5."""
    return make_refdet_dataset(tmp_path / "refdet")


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    """A COCO data set with train and val annotation files, categories 1-5, 5 images each."""
    return make_coco_dataset(tmp_path / "coco")


@pytest.fixture
def one_thread():
    """One torch thread: with other jobs on a small machine, torch's thread pool stalls at every op
    (10x slower here); the benchmarks' smoke tests check tables, not speed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
