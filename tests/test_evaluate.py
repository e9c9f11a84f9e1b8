"""The evaluate CLI on any data set, with a real (tiny, untrained) checkpoint and real image files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from pipeline.cli import UserError
from pipeline.config import to_raw
from pipeline.data.manifest import read_manifest
from pipeline.detector import build_detector
from tests.models import model_config
from pipeline.engine.amp import resolve_precision
from pipeline.engine.checkpoint import save_checkpoint
from pipeline.evaluate import main
from tests.datasets import truncate

TINY_MODEL = model_config(search_size=[128, 96])


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder with default params and a tiny untrained checkpoint at models/best.pt."""
    work = make_workdir(tmp_path / "work")
    monkeypatch.chdir(work)
    return work


def make_workdir(work: Path) -> Path:
    """``work`` with default params and a tiny untrained checkpoint at models/best.pt."""
    (work / "models").mkdir(parents=True)
    (work / "params.yaml").write_text("templates: {size: 32, workers: 1}\nevaluate: {gallery_frames: 2}\n")
    torch.manual_seed(0)
    model = build_detector(TINY_MODEL)
    save_checkpoint(work / "models" / "best.pt", {"model": model.state_dict(), "model_config": to_raw(TINY_MODEL),
                                                  "template_size": 32, "epoch": 0})
    return work


@pytest.mark.parametrize("fmt", ["cpn", "refdet", "coco", "auto"])
def test_evaluate_any_data_set(workdir, tmp_path, fmt, request):
    root = request.getfixturevalue(f"{'cpn' if fmt == 'auto' else fmt}_root")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    out = tmp_path / "eval-out"
    main(["--data", str(root), "--format", fmt, "--out", str(out)])

    metrics = json.loads((out / "metrics.json").read_text())
    frames = pd.read_csv(out / "frames.csv")
    assert metrics["frames"] == len(frames) > 0
    assert metrics["objects"] == frames["object_id"].nunique()
    for key in ("AP", "AP50", "precision", "recall", "f1", "success", "fp_rate", "ms_per_frame", "ece"):
        assert key in metrics
    assert metrics["ms_per_frame"] > 0
    # the checkpoint saved no presence threshold: calibrated falls back to 0.3
    assert (metrics["score_threshold"], metrics["score_threshold_source"]) == (0.3, "default")
    for name in ("per_object.csv", "per_size.csv", "pr_curve.csv", "score_hist.csv", "predictions.csv",
                 "reliability.csv", "gallery.png"):
        assert (out / name).is_file(), name
    # every frame of both splits is scored, and nothing is written into the data set or the repo
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    assert not (workdir / "data").exists() and not (workdir / "reports").exists()


def test_skipped_inputs_are_listed_in_the_out_folder(workdir, cpn_root, tmp_path, caplog):
    with open(workdir / "params.yaml", "a") as f:
        f.write("data: {on_error: skip}\n")
    truncate(cpn_root / "train/search/images/Class_2_frame_10.jpg")
    out = tmp_path / "eval-out"
    with caplog.at_level("WARNING"):
        main(["--data", str(cpn_root), "--out", str(out)])
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected["file"].tolist() == [str(cpn_root / "train/search/images/Class_2_frame_10.jpg")]
    assert f"1 bad inputs skipped (data.on_error: skip), listed in {out / 'rejected.csv'}" in caplog.text


def test_evaluate_default_out_folder_is_named_after_the_data(workdir, cpn_root):
    main(["--data", str(cpn_root)])
    assert (workdir / f"evaluation-{cpn_root.name}" / "metrics.json").is_file()


def test_missing_checkpoint_is_a_user_error(workdir, cpn_root):
    with pytest.raises(UserError, match="nope.pt: checkpoint not found"):
        main(["--checkpoint", "nope.pt", "--data", str(cpn_root)])


def test_missing_data_folder_is_a_user_error(workdir, tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        main(["--data", str(tmp_path / "nowhere")])


def test_stage_mode_needs_the_prepared_data(workdir):
    with pytest.raises(UserError, match="manifest.csv: not found; run the prepare stage"):
        main([])


def test_stage_mode_scores_the_val_split(workdir, cpn_root):
    """Without --data: the prepared val split, into reports/evaluate/ (no MLflow run: a warning)."""
    from pipeline.config import DataConfig, TemplatesConfig
    from pipeline.paths import Paths
    from pipeline.prepare import prepare
    from pipeline.resize_templates import resize_templates

    paths = Paths()
    prepare(paths, DataConfig(source=str(cpn_root)))
    resize_templates(paths, TemplatesConfig(size=32, workers=1))
    main([])
    metrics = json.loads(paths.evaluation.metrics.read_text())
    val = read_manifest(paths.manifest).query("split == 'val'")
    assert metrics["frames"] == len(val) and metrics["objects"] == val["object_id"].nunique()
    assert metrics["inference_dtype"] == resolve_precision("auto", torch.device("cpu")).name


def test_fp16_on_the_cpu_is_an_error_naming_the_key(workdir, cpn_root):
    from pipeline.config import ConfigError

    (workdir / "params.yaml").write_text("templates: {size: 32, workers: 1}\nevaluate: {amp: fp16}\n")
    with pytest.raises(ConfigError, match="evaluate.amp: fp16 needs a CUDA device"):
        main(["--data", str(cpn_root)])
    assert not (workdir / f"evaluation-{cpn_root.name}").exists()


def test_unwritable_out_fails_before_any_frame_is_scored(workdir, cpn_root, tmp_path):
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "scores"  # under a regular file: not writable, not even by root
    with pytest.raises(UserError, match="--out cannot be written"):
        main(["--data", str(cpn_root), "--out", str(out)])


def test_the_checkpoint_threshold_is_used_unless_params_override_it(workdir, cpn_root, tmp_path, caplog):
    from pipeline.engine.checkpoint import load_checkpoint

    best = workdir / "models" / "best.pt"
    save_checkpoint(best, {**load_checkpoint(best), "presence": {"score_threshold": 0.42, "metric": "f1",
                                                                   "value": 0.5, "frames": 10}})
    with caplog.at_level("INFO"):
        main(["--data", str(cpn_root), "--out", str(tmp_path / "a")])
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert (metrics["score_threshold"], metrics["score_threshold_source"]) == (0.42, "checkpoint")
    assert "no calibrated presence threshold" not in caplog.text
    frames = pd.read_csv(tmp_path / "a" / "frames.csv")
    assert set(frames.loc[frames["score"] < 0.42, "outcome"]) <= {"FN", "TN"}

    (workdir / "params.yaml").write_text("templates: {size: 32, workers: 1}\n"
                                         "evaluate: {gallery_frames: 2, score_threshold: 0.05}\n")
    main(["--data", str(cpn_root), "--out", str(tmp_path / "b")])
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert (metrics["score_threshold"], metrics["score_threshold_source"]) == (0.05, "params")


def test_a_bad_threshold_word_names_the_key(workdir, cpn_root):
    from pipeline.config import ConfigError

    (workdir / "params.yaml").write_text("templates: {size: 32, workers: 1}\nevaluate: {score_threshold: auto}\n")
    with pytest.raises(ConfigError, match="evaluate.score_threshold: 'auto' is not a number or one of calibrated"):
        main(["--data", str(cpn_root)])
