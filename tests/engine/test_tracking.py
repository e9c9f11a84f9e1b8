"""Real MLflow on SQLite; an unreachable store never raises."""

import logging

import pytest

from pipeline.engine.tracking import Tracker, default_tracking_uri, repo_root


def test_run_with_params_and_metrics_lands_in_sqlite(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri)
    run_id = tracker.start("exp-1", {"train.lr": 0.1, "model.levels": [2, 3]}, {"git_commit": "abc", "none": None})
    tracker.log_metrics({"loss": 1.5}, step=0)
    tracker.log_metrics({"loss": 0.5}, step=1)
    tracker.end()
    assert run_id
    run = mlflow.tracking.MlflowClient(uri).get_run(run_id)
    assert run.data.params["train.lr"] == "0.1"
    assert run.data.params["model.levels"] == "[2, 3]"
    assert run.data.metrics["loss"] == 0.5
    assert run.data.tags["git_commit"] == "abc"
    assert run.info.run_name == "exp-1"
    # re-open the same run (what evaluate does) and add to it
    again = Tracker(uri)
    assert again.start(None, {}, {}, run_id=run_id) == run_id
    again.log_metrics({"AP50": 0.9})
    again.end()
    assert mlflow.tracking.MlflowClient(uri).get_run(run_id).data.metrics["AP50"] == 0.9


@pytest.mark.parametrize("kind", ["server", "sqlite"])
def test_unreachable_store_warns_once_and_goes_on(kind, caplog, tmp_path):
    # port 9 (discard) has no server; a regular file as "folder" makes the SQLite path unusable
    (tmp_path / "a-file").write_text("")
    uri = "http://127.0.0.1:9" if kind == "server" else f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    tracker = Tracker(uri)
    with caplog.at_level(logging.WARNING):
        assert tracker.start("x", {"a": 1}, {}) is None
        tracker.log_metrics({"loss": 1.0}, step=0)
        tracker.end()
    warnings = [r for r in caplog.records if "MLflow tracking" in r.getMessage()]
    assert len(warnings) == 1
    assert not tracker.enabled


def test_default_uri_is_absolute_sqlite_at_repo_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = default_tracking_uri()
    assert uri.startswith("sqlite:////") and uri.endswith("/mlflow.db")
    assert uri == f"sqlite:///{repo_root() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.invalid:5000")
    assert default_tracking_uri() == "http://example.invalid:5000"


def test_repo_root_from_a_dvc_temp_experiment_is_the_main_repo(tmp_path):
    inside = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpab12" / "sub"
    inside.mkdir(parents=True)
    assert repo_root(inside) == tmp_path / "repo"
