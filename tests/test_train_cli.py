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
