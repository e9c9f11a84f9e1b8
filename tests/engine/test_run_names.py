"""Run names from git and DVC, never from Python's (seeded) ``random``."""

import random
import subprocess

from pipeline.engine.run_names import changed_params, committed_params, dvc_tags, run_name


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)


def test_run_names_tell_commits_params_and_dirty_trees_apart(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    outside = run_name({"train.lr": 0.1}, dvc_tags(tmp_path))  # not a git checkout
    assert outside.startswith("run-") and len(outside) == len("run-") + 6 + 1 + len("20261203T164800")
    _git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("train: {lr: 0.1}\n")
    _git(tmp_path, "add", "params.yaml")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "init")
    sha = _git(tmp_path, "rev-parse", "HEAD").stdout.strip()
    tags = dvc_tags(tmp_path)
    assert tags["git_commit"] == sha and tags["git_dirty"] == "false"
    clean = run_name({"train.lr": 0.1}, tags)
    assert clean.startswith(sha[:7] + "-") and "dirty" not in clean and len(clean) == 7 + 1 + 6
    assert run_name({"train.lr": 0.1}, dvc_tags(tmp_path)) == clean  # same code and params: same name
    assert run_name({"train.lr": 0.2}, tags) != clean
    (tmp_path / "params.yaml").write_text("train: {lr: 0.2}\n")
    tags = dvc_tags(tmp_path)
    assert tags["git_dirty"] == "true"
    assert run_name({"train.lr": 0.2}, tags).startswith(sha[:7] + "-dirty-")
    monkeypatch.setenv("DVC_EXP_NAME", "my-exp")
    assert run_name({"train.lr": 0.2}, dvc_tags(tmp_path)) == "my-exp"  # DVC's name wins, so both tools agree


def test_changed_params_are_named_against_the_committed_params_file(tmp_path):
    from pipeline.config import load_params, to_flat_dict

    _git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("train: {lr: 0.001}\n")
    _git(tmp_path, "add", "params.yaml")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "init")
    sha = _git(tmp_path, "rev-parse", "HEAD").stdout.strip()[:7]
    (tmp_path / "params.yaml").write_text("train: {lr: 0.01, iou_type: ciou}\n")
    flat = to_flat_dict(load_params(tmp_path / "params.yaml"))
    changed = changed_params(flat, committed_params(tmp_path / "params.yaml"))
    assert changed == {"train.iou_type": "ciou", "train.lr": 0.01}
    assert run_name(flat, dvc_tags(tmp_path), changed) == f"{sha}-dirty-train.iou_type=ciou,train.lr=0.01"
    many = {f"train.k{i}": i for i in range(20)}
    assert len(run_name(flat, dvc_tags(tmp_path), many)) == 7 + len("-dirty-") + 6  # too long: a digest
    assert committed_params(tmp_path / "nothing" / "params.yaml") is None


def test_a_seeded_random_does_not_repeat_names(tmp_path, monkeypatch):
    """Training seeds ``random`` before the run starts; MLflow's own names would repeat."""
    import mlflow

    from pipeline.engine.tracking import Tracker

    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    names = []
    for lr in (0.1, 0.2):
        random.seed(0)
        params = {"train.lr": lr}
        tracker = Tracker(uri)
        tracker.start(run_name(params, dvc_tags(tmp_path)), params, {})
        tracker.end()
        names.append(mlflow.tracking.MlflowClient(uri).get_run(tracker.run_id).info.run_name)
    assert names[0] != names[1] and all(n.startswith("run-") for n in names)
