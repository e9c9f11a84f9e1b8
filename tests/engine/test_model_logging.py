"""best.pt's detector as an MLflow model of the run, registered on request (real MLflow, SQLite)."""

from __future__ import annotations

import torch

from pipeline.config import to_raw
from pipeline.detector.model import build_detector
from pipeline.engine.checkpoint import save_checkpoint
from pipeline.engine.model_logging import MODEL_NAME, REGISTERED_NAME, log_detector
from pipeline.engine.tracking import Tracker
from tests.models import model_config


def test_logged_model_is_the_checkpoints_detector_and_is_registered(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.chdir(tmp_path)
    cfg = model_config(search_size=[128, 96])
    torch.manual_seed(0)
    src = build_detector(cfg).eval()
    best = tmp_path / "best.pt"
    save_checkpoint(best, {"model": src.state_dict(), "model_config": to_raw(cfg), "template_size": 32, "epoch": 4,
                           "presence": {"score_threshold": 0.42, "metric": "f1", "value": 0.5, "frames": 9,
                                        "epoch": 4}})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert log_detector(Tracker(uri), best) is None  # no run open: nothing logged
    tracker = Tracker(uri)
    tracker.start("with-model", {}, {})
    model_uri = log_detector(tracker, best, register=True)
    tracker.end()
    assert model_uri
    client = mlflow.tracking.MlflowClient(uri)
    versions = client.search_model_versions(f"name = '{REGISTERED_NAME}'")
    assert [(int(v.version), v.run_id) for v in versions] == [(1, tracker.run_id)]
    mlflow.set_tracking_uri(uri)
    info = mlflow.models.get_model_info(model_uri)
    assert info.name == MODEL_NAME and info.metadata["score_threshold"] == 0.42
    assert info.metadata["search_width"] == 128 and info.metadata["search_height"] == 96
    shapes = {s["name"]: list(s["tensor-spec"]["shape"]) for s in info.signature.inputs.to_dict()}
    assert shapes == {"templates": [-1, -1, 3, 32, 32], "search": [-1, 3, 96, 128]}
    loaded = mlflow.pytorch.load_model(model_uri)
    templates, search = torch.rand(1, 2, 3, 32, 32), torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        a, b = loaded(templates, search), src(templates, search)
    for key, value in b.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(a[key], value, msg=key)
