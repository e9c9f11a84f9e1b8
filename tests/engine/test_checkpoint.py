import random

import numpy as np
import pytest
import torch

from pipeline.cli import UserError
from pipeline.engine.checkpoint import load_checkpoint, params_digest, rng_state, save_checkpoint, set_rng_state


def test_round_trip_restores_every_rng(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt = load_checkpoint(path)
    set_rng_state(ckpt["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert ckpt["format_version"] == 1
    assert not list(tmp_path.glob(".*tmp"))  # the temp file was renamed, not left behind


class Evil:
    """A class a checkpoint must never unpickle."""


def test_load_refuses_pickled_objects_and_names_the_file(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": Evil()}, path)
    with pytest.raises(UserError, match="evil.pt: not a readable needle checkpoint"):
        load_checkpoint(path)
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(UserError, match="trunc.pt"):
        load_checkpoint(tmp_path / "trunc.pt")
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_digest_is_stable_and_sensitive():
    a = params_digest({"train": {"lr": 0.1, "epochs": 2}})
    assert a == params_digest({"train": {"epochs": 2, "lr": 0.1}})
    assert a != params_digest({"train": {"lr": 0.2, "epochs": 2}})


def test_run_digest_changes_with_the_data_not_only_the_params():
    # dvc exp run copies models/last.pt into the experiment: a run on other data must not resume it
    from pipeline.config import ModelConfig, TrainConfig
    from pipeline.data.dataset import Sample
    from pipeline.engine.trainer import run_digest

    a = Sample("train/a_0.jpg", "a", "a_0", 0, (1.0, 2.0, 30.0, 40.0), ("t/a_1.jpg",))
    moved = Sample("train/a_0.jpg", "a", "a_0", 0, (1.0, 2.0, 31.0, 40.0), ("t/a_1.jpg",))
    m, t = ModelConfig(), TrainConfig()
    assert run_digest(m, t, 64, [a]) == run_digest(m, t, 64, [a])
    assert run_digest(m, t, 64, [a]) != run_digest(m, t, 64, [moved])
    assert run_digest(m, t, 64, [a]) != run_digest(m, t, 64, [a, a])
    assert run_digest(m, t, 64, [a]) == run_digest(m, TrainConfig(workers=0, resume=False), 64, [a])
