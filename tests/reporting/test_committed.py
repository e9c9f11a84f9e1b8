"""Committed metrics from a real temporary git repository, and the diff against them."""

import json

from pipeline.reporting.committed import find_base, metrics_diff, read_committed
from tests.reporting.builders import commit_all, git


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_no_git_repository_or_no_committed_file_is_none(tmp_path):
    metrics = tmp_path / "reports" / "evaluate" / "metrics.json"
    _write(metrics, {"AP50": 0.5})
    assert read_committed(tmp_path, metrics) is None  # not a repository
    git(tmp_path, "init", "-q")
    assert read_committed(tmp_path, metrics) is None  # no commit yet
    (tmp_path / "other.txt").write_text("x")
    git(tmp_path, "add", "other.txt")
    git(tmp_path, "commit", "-q", "-m", "other")
    assert read_committed(tmp_path, metrics) is None  # file not committed


def test_committed_version_not_the_working_copy(tmp_path):
    metrics = tmp_path / "reports" / "evaluate" / "metrics.json"
    _write(metrics, {"AP50": 0.5, "frames": 40, "AP_tiny": None})
    commit_all(tmp_path)
    _write(metrics, {"AP50": 0.6, "frames": 40, "AP_tiny": 0.2, "new_metric": 1.0})
    old = read_committed(tmp_path, metrics)
    assert old == {"AP50": 0.5, "frames": 40, "AP_tiny": None}
    diff = metrics_diff(old, json.loads(metrics.read_text()), order=["frames", "AP50"])
    assert diff["metric"].tolist() == ["AP50", "AP_tiny", "new_metric"]  # unchanged frames left out
    ap50 = diff.iloc[0]
    assert ap50["old"] == 0.5 and ap50["new"] == 0.6 and abs(ap50["change"] - 0.1) < 1e-12
    assert diff.iloc[1]["old"] is None and diff.iloc[1]["change"] is None
    assert diff.iloc[2]["old"] is None and diff.iloc[2]["new"] == 1.0


def test_root_below_the_repository_top(tmp_path):
    root = tmp_path / "project"
    metrics = root / "m.json"
    _write(metrics, {"AP": 1})
    commit_all(tmp_path)
    assert read_committed(root, metrics) == {"AP": 1}


def test_committed_file_that_is_not_json_is_none(tmp_path):
    metrics = tmp_path / "m.json"
    metrics.write_text("{not json")
    commit_all(tmp_path)
    assert read_committed(tmp_path, metrics) is None


def test_integers_stay_integers_and_removed_metrics_show():
    diff = metrics_diff({"frames": 40, "gone": 0.5}, {"frames": 41})
    assert diff.to_dict("records") == [
        {"metric": "frames", "old": 40, "new": 41, "change": 1},
        {"metric": "gone", "old": 0.5, "new": None, "change": None},
    ]
    assert metrics_diff({"a": 1.0}, {"a": 1.0}).empty


def test_float_round_off_is_no_change():
    diff = metrics_diff({"st_iou": 0.6356661969469222, "AP": 0.5}, {"st_iou": 0.6356661969469223, "AP": 0.5001})
    assert diff["metric"].tolist() == ["AP"]


def test_text_values_show_as_text():
    diff = metrics_diff({"AP": 0.5, "inference_dtype": "bf16"}, {"AP": 0.5, "inference_dtype": "fp32"})
    assert diff.to_dict("records") == [{"metric": "inference_dtype", "old": "bf16", "new": "fp32", "change": None}]
    assert metrics_diff({"inference_dtype": "fp32"}, {"inference_dtype": "fp32"}).empty
    added = metrics_diff({}, {"inference_dtype": "fp32"}).iloc[0]
    assert (added["old"], added["new"]) == (None, "fp32")


def test_base_is_the_newest_commit_with_other_metrics_before_and_after_committing(tmp_path):
    metrics = tmp_path / "reports" / "m.json"
    assert find_base(tmp_path, metrics, {"AP": 1}) is None  # no git repository
    _write(metrics, {"AP": 1})
    commit_all(tmp_path, "first metrics")
    (tmp_path / "code.py").write_text("x = 1")
    commit_all(tmp_path, "code only")
    assert find_base(tmp_path, metrics, {"AP": 1}) is None  # every committed version equals the working copy
    _write(metrics, {"AP": 2})
    before = find_base(tmp_path, metrics, {"AP": 2})
    assert (before.subject, before.metrics) == ("first metrics", {"AP": 1})
    commit_all(tmp_path, "second metrics")  # a clone of this commit sees the same base
    after = find_base(tmp_path, metrics, {"AP": 2})
    assert (after.commit, after.metrics) == (before.commit, {"AP": 1}) and len(after.short) == 10
