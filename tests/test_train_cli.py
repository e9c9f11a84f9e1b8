"""User mistakes at the train stage's command line end in one clear line, exit 2, no traceback."""

from __future__ import annotations

import sys

import pytest
import yaml

from tests.pipeline_repo import REPO, run


def _train(tmp_path, params: dict):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return run([sys.executable, "-m", "pipeline.train"], tmp_path, check=False,
               extra_env={"PYTHONPATH": str(REPO)})


def test_missing_prepared_data_names_the_stage_to_run(tmp_path):
    proc = _train(tmp_path, {})
    assert proc.returncode == 2
    assert "error: data/prepared/manifest.csv: not found; run the prepare stage first" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_param_names_the_key(tmp_path):
    proc = _train(tmp_path, {"train": {"iou_type": "cio"}})
    assert proc.returncode == 2
    assert "train.iou_type: 'cio' is not one of iou, giou, diou, ciou" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_frame_deleted_after_prepare_is_named_before_training(tmp_path):
    from tests.pipeline_repo import dvc, make_pipeline_repo

    root = make_pipeline_repo(tmp_path / "repo")
    dvc(root, "repro", "resize_templates")
    victim = sorted((root / "data/prepared/demo/train/search/images").glob("*.jpg"))[0]
    victim.unlink()
    proc = run([sys.executable, "-m", "pipeline.train"], root, check=False)
    assert proc.returncode == 2
    assert f"{victim.name}: listed in the prepared data but missing" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_frame_broken_after_prepare_is_one_line_with_or_without_workers(tmp_path):
    from tests.pipeline_repo import dvc, make_pipeline_repo, set_params

    root = make_pipeline_repo(tmp_path / "repo")
    dvc(root, "repro", "resize_templates")
    victim = sorted((root / "data/prepared/demo/train/search/images").glob("*.jpg"))[0]
    victim.write_bytes(b"not a jpeg any more")
    expected = f"error: {victim.relative_to(root)}: cannot read image (missing, unreadable or corrupt)"
    for workers in (0, 1):
        set_params(root, {"train": {"workers": workers}})
        proc = run([sys.executable, "-m", "pipeline.train"], root, check=False)
        assert proc.returncode == 2, f"workers={workers}: {proc.stderr[-3000:]}"
        assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")] == [expected], workers
        assert "Traceback" not in proc.stderr and "DataLoader worker" not in proc.stderr, workers
