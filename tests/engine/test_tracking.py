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


_WRITER = """
import sys
from pipeline.engine.tracking import Tracker
t = Tracker(sys.argv[1])
assert t.start(f"w{sys.argv[2]}", {"train.seed": sys.argv[2], "model.fusion": "average"}, {"k": "v"})
for step in range(20):
    t.log_metrics({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
t.end()
assert t.enabled, "tracker gave up"
print("ok")
"""


@pytest.mark.slow
def test_parallel_writers_share_one_fresh_sqlite_store(tmp_path):
    """Queue workers start together on a store that does not exist yet: every run must land."""
    import subprocess
    import sys

    import mlflow

    from tests.pipeline_repo import REPO, env

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, uri, str(i)], cwd=REPO, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0 and "ok" in out, err[-3000:]
        assert "failed during" not in err
    client = mlflow.tracking.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("needle").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["w0", "w1", "w2", "w3"]
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 20 for r in runs)


def test_read_only_store_says_one_line_and_nothing_else(tmp_path, monkeypatch, capfd, caplog):
    """MLflow's own ~85-line ERROR traceback used to come first; a read-only SQLite open (the
    ``mode=ro`` URI) stops writes for root too, where file permissions would not."""
    monkeypatch.chdir(tmp_path)  # the read-only URI's lock file and MLflow's mlruns/ land here
    db = tmp_path / "mlflow.db"
    writer = Tracker(f"sqlite:///{db}")
    assert writer.start("first", {"a": 1}, {})
    writer.end()
    capfd.readouterr()
    tracker = Tracker(f"sqlite:///file:{db}?mode=ro&uri=true")
    with caplog.at_level(logging.INFO):
        assert tracker.start("second", {"a": 1}, {}) is None
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ERROR" not in err, err
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in loud] == ["pipeline.engine.tracking"]
    message = loud[0].getMessage()
    assert "\n" not in message and "OperationalError: attempt to write a readonly database" in message




def test_artifacts_go_beside_the_store_or_where_the_environment_says(tmp_path, monkeypatch):
    import mlflow

    from pipeline.engine.tracking import ARTIFACTS_ENV, EXPERIMENT, artifact_location

    monkeypatch.chdir(tmp_path / "..")  # not the store's folder: mlruns/ of the cwd is not used
    monkeypatch.delenv(ARTIFACTS_ENV, raising=False)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    tracker = Tracker(uri)
    assert tracker.start("a", {}, {})
    tracker.log_artifact(_text_file(tmp_path), "notes")
    tracker.end()
    client = mlflow.tracking.MlflowClient(uri)
    location = client.get_experiment_by_name(EXPERIMENT).artifact_location
    assert location.removeprefix("file://") == str(tmp_path / "store" / "mlartifacts")
    assert list((tmp_path / "store" / "mlartifacts").rglob("notes/a.txt"))
    monkeypatch.setenv(ARTIFACTS_ENV, "s3://bucket/needle")
    assert artifact_location(uri) == "s3://bucket/needle"
    monkeypatch.delenv(ARTIFACTS_ENV)
    assert artifact_location("http://mlflow.example:5000") is None  # a server decides


def _text_file(folder):
    path = folder / "a.txt"
    path.write_text("a")
    return path
