"""Stage ``report`` end to end on fixture files in a temp dir, with a real MLflow store and git repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import UserError
from pipeline.report import main
from tests.reporting.builders import MODEL_METRICS, commit_all, copy_store, make_report_root, write_scored

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ["# Evaluation report", "## Top-1 success and false alarms", "## Learned model vs classical baseline", "## Change against the committed metrics",
            "## Ablations (MLflow runs)", "## Per object", "## Per size", "## Figures"]


@pytest.fixture(autouse=True)
def _default_store(monkeypatch):
    # the store is <root>/mlflow.db (default_tracking_uri), never the developer's MLFLOW_TRACKING_URI
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _snapshot(paths) -> dict[str, bytes]:
    files = {"metrics.md": paths.report.read_bytes()}
    files.update({f"figures/{p.name}": p.read_bytes() for p in sorted(paths.figures.iterdir())})
    return files


def test_every_section_and_deterministic_twice(tmp_path):
    paths = make_report_root(tmp_path)
    copy_store(tmp_path / "mlflow.db")
    main(paths)
    first = _snapshot(paths)
    main(paths)
    assert _snapshot(paths) == first  # byte-identical markdown and PNGs

    text = paths.report.read_text()
    positions = [text.index(s) for s in SECTIONS]
    assert positions == sorted(positions)
    assert "| AP50 | 0.700 | 0.200 |" in text and "| ms/frame | 12.3 | 88.0 |" in text
    # ablation: same setting, seeds 0 and 1 -> mean ± std; run without evaluate metrics left out
    assert "| attention | 3 | giou | 0, 1 | 2 | 0.750 ± 0.071 |" in text
    assert "| attention | 1 | ciou | 0 | 1 | 0.900 |" in text
    assert "1 run without evaluate metrics left out" in text
    assert "| 007 | 13 | 11 | 0.750 / 0.375 |" in text  # per object, model / baseline
    assert "| large | ≥ 96 | 5 | 0.600 / 0.300 |" in text
    for name in ("train_curve.png", "pr_curve.png", "gallery.png"):
        assert f"](figures/{name})" in text and (paths.figures / name).is_file()
    assert "No committed metrics to compare with" in text  # tmp_path is no git repository
    assert str(tmp_path) not in text  # no absolute paths: the same text on every machine


def test_change_against_committed_metrics(tmp_path):
    paths = make_report_root(tmp_path)
    commit_all(tmp_path, "first run")
    main(paths)
    assert "No committed metrics to compare with" in paths.report.read_text()

    paths.evaluation.metrics.write_text(json.dumps({**MODEL_METRICS, "AP50": 0.75, "success": 0.6, "frames": 41}))
    main(paths)
    text = paths.report.read_text()
    section = text[text.index("## Change against"):text.index("## Ablations")]
    assert "`reports/evaluate/metrics.json` at commit `" in section and '("first run")' in section
    assert "paired bootstrap over the 3 objects" in section
    assert "| metric | old | new | change | SE | beyond noise |" in section
    assert "| AP50 | 0.700 | 0.750 | +0.050 | n/a | n/a |" in section  # AP is not resampled
    assert "| success | 0.625 | 0.600 | -0.025 | 0.000 | yes |" in section  # same frames.csv: no noise
    assert "| frames | 40 | 41 | +1 | n/a | n/a |" in section
    assert "| AP |" not in section  # unchanged metrics are not listed
    assert "No MLflow runs yet." in text and not (tmp_path / "mlflow.db").exists()

    commit_all(tmp_path, "second run")  # committed with the report: a clone reads the same comparison
    main(paths)
    assert paths.report.read_text() == text


def test_missing_optional_inputs_are_lines_not_crashes(tmp_path):
    paths = make_report_root(tmp_path, baseline=False, train_curve=False)
    for path in (paths.evaluation.per_object, paths.evaluation.per_size, paths.evaluation.pr_curve,
                 paths.evaluation.reliability, paths.evaluation.gallery):
        path.unlink()
    paths.figures.mkdir(parents=True)
    (paths.figures / "stale.png").write_bytes(b"old")
    main(paths)
    text = paths.report.read_text()
    assert all(s in text for s in SECTIONS)
    for line in ("No baseline results: `reports/baseline/metrics.json` not found (made by stage `baseline`).",
                 "No training curve: `reports/train_curve.csv` not found (made by stage `train`).",
                 "No per-object results:", "No per-size results:", "No precision-recall curve:", "No gallery:",
                 "No reliability table:", "No MLflow runs yet."):
        assert line in text
    assert "![" not in text
    assert list(paths.figures.iterdir()) == []  # the folder is rewritten whole: no stale figures


def test_store_from_mlflow_tracking_uri(tmp_path, monkeypatch):
    paths = make_report_root(tmp_path / "root")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_store(tmp_path / "elsewhere" / "mlflow.db"))
    main(paths)
    assert "| average | 3 | giou | 0 | 1 | 0.500 |" in paths.report.read_text()


def test_unreachable_store_is_a_line(tmp_path):
    paths = make_report_root(tmp_path)
    (tmp_path / "mlflow.db").write_bytes(b"not a database" * 100)
    main(paths)
    assert "MLflow store unreachable (" in paths.report.read_text()


def test_missing_model_metrics_is_a_user_error(tmp_path):
    paths = make_report_root(tmp_path)
    paths.evaluation.metrics.unlink()
    with pytest.raises(UserError, match="reports/evaluate/metrics.json does not exist; it is made by stage evaluate"):
        main(paths)


def test_command_line_reports_user_error_in_one_line(tmp_path):
    make_report_root(tmp_path, baseline=False)
    (tmp_path / "reports" / "evaluate" / "metrics.json").unlink()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "pipeline.report"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: reports/evaluate/metrics.json does not exist; it is made by stage "
                                   "evaluate (run `dvc repro evaluate`)")


def test_real_photo_check_set_stands_beside_the_demo(tmp_path):
    paths = make_report_root(tmp_path)
    main(paths)
    assert "No real-photo check set was scored" in paths.report.read_text()
    write_scored(paths.realset_evaluation, {**MODEL_METRICS, "AP50": 0.412, "frames": 96, "objects": 12},
                 scale=0.5)
    main(paths)
    text = paths.report.read_text()
    assert "| metric | model | baseline | model, real photos |" in text
    assert "| AP50 | 0.700 | 0.200 | 0.412 |" in text
    assert "check set (`data/realset`, stage `realset`), 96 frames" in text
    # switched off (realset.enabled: false): evaluate writes only this
    paths.realset_evaluation.metrics.write_text(json.dumps({"available": False}))
    main(paths)
    assert "| metric | model | baseline |" in paths.report.read_text()
    assert "No real-photo check set was scored" in paths.report.read_text()


def test_report_shows_ece_and_the_reliability_diagram(tmp_path):
    paths = make_report_root(tmp_path)
    metrics = json.loads(paths.evaluation.metrics.read_text())
    paths.evaluation.metrics.write_text(json.dumps({**metrics, "score_threshold": 0.42,
                                                    "score_threshold_source": "checkpoint"}))
    main(paths)
    text = paths.report.read_text()
    headline = text[:text.index("## Change against")]
    assert "| ECE (top-1 score) | 0.087 | 0.087 |" in headline  # model, baseline
    assert "score threshold 0.420 (model, chosen on the validation split at the end of training" in headline
    assert "![Reliability of the top-1 score](figures/reliability.png)" in text
    assert (paths.figures / "reliability.png").read_bytes().startswith(b"\x89PNG")
