"""Report-stage inputs on disk: metrics, CSVs, a training curve, a real MLflow SQLite store, a git repo."""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from pipeline.paths import Paths, ScoredOutputs

MODEL_METRICS = {
    "AP": 0.41234, "AP50": 0.7, "AP75": 0.35, "AP_tiny": None, "AP_small": 0.3, "AP_medium": 0.5, "AP_large": 0.6,
    "precision": 0.8, "recall": 0.6, "f1": 0.6857142857, "mean_iou": 0.55, "success": 0.625, "fp_rate": 0.125,
    "frames": 40, "frames_with_target": 32, "objects": 3, "ms_per_frame": 12.345, "score_threshold": 0.3,
    "iou_threshold": 0.5, "ece": 0.0875,
}
BASELINE_METRICS = {**MODEL_METRICS, "AP": 0.1, "AP50": 0.2, "AP75": 0.05, "precision": 0.3, "recall": 0.25,
                    "f1": 0.2727, "mean_iou": 0.2, "success": 0.25, "fp_rate": 0.5, "ms_per_frame": 88.04,
                    "score_threshold": 0.5}

# (params, eval metrics or None for a train run never evaluated)
RUNS = [
    ({"model.fusion.type": "attention", "model.correlation.kernel": "3", "train.iou_type": "giou", "train.seed": "0"},
     {"AP": 0.40, "AP50": 0.70, "success": 0.60, "f1": 0.65, "mean_iou": 0.50, "ms_per_frame": 12.0}),
    ({"model.fusion.type": "attention", "model.correlation.kernel": "3", "train.iou_type": "giou", "train.seed": "1"},
     {"AP": 0.44, "AP50": 0.80, "success": 0.70, "f1": 0.75, "mean_iou": 0.60, "ms_per_frame": 14.0}),
    ({"model.fusion.type": "average", "model.correlation.kernel": "3", "train.iou_type": "giou", "train.seed": "0"},
     {"AP": 0.30, "AP50": 0.50, "success": 0.40, "f1": 0.45, "mean_iou": 0.40, "ms_per_frame": 11.0}),
    ({"model.fusion.type": "attention", "model.correlation.kernel": "1", "train.iou_type": "ciou", "train.seed": "0"},
     {"AP": 0.42, "AP50": 0.90, "success": 0.65, "f1": 0.70, "mean_iou": 0.55, "ms_per_frame": 13.0}),
    ({"model.fusion.type": "average", "model.correlation.kernel": "1", "train.iou_type": "giou", "train.seed": "0"}, None),
]


def write_scored(outputs: ScoredOutputs, metrics: dict, scale: float = 1.0, tables: bool = True) -> None:
    """metrics.json and, with ``tables``, per_object/per_size/pr_curve CSVs and a gallery PNG."""
    outputs.folder.mkdir(parents=True, exist_ok=True)
    outputs.metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if not tables:
        return
    pd.DataFrame({
        "object_id": ["obj10", "007", "obj2"], "frames": [14, 13, 13], "frames_with_target": [11, 11, 10],
        "success": [0.5 * scale, 0.75 * scale, 0.6 * scale], "precision": [0.8, 0.9, float("nan")],
        "recall": [0.5, 0.7, 0.4], "f1": [0.6, 0.79, 0.5], "mean_iou": [0.5, 0.6, 0.55], "fp_rate": [0.0, 0.5, 0.333],
    }).to_csv(outputs.per_object, index=False)
    pd.DataFrame({
        "size": ["large", "tiny", "small", "medium"], "min_px": [96, 0, 16, 32], "max_px": [float("inf"), 16, 32, 96],
        "frames": [5, 4, 12, 11], "AP": [0.6 * scale, float("nan"), 0.3 * scale, 0.5 * scale],
        "success": [0.8, 0.0, 0.5, 0.7],
    }).to_csv(outputs.per_size, index=False)
    thresholds = [i / 10 for i in range(10)]
    pd.DataFrame({"threshold": thresholds, "precision": [0.5 + 0.05 * i * scale for i in range(10)],
                  "recall": [0.9 - 0.09 * i for i in range(10)]}).to_csv(outputs.pr_curve, index=False)
    outputs.gallery.write_bytes(b"\x89PNG\r\n\x1a\n gallery " + str(scale).encode())
    pd.DataFrame({
        "sequence_id": ["obj10_s1", "007_s0", "obj10_s0"], "object_id": ["obj10", "007", "obj10"],
        "frames": [7, 13, 7], "frames_with_target": [5, 11, 6], "frames_predicted": [6, 12, 6],
        "st_iou": [0.4 * scale, 0.5 * scale, 0.6 * scale],
        "frames_predicted_temporal": [5, 11, 6], "st_iou_temporal": [0.45 * scale, float("nan"), 0.65 * scale],
        "frames_predicted_tracked": [5, 10, 6], "st_iou_tracked": [0.55 * scale, 0.58 * scale, float("nan")],
    }).to_csv(outputs.sequences, index=False)
    # 2 frames per object: obj10 hit and false alarm, 007 hit and miss, obj2 below threshold and quiet
    pd.DataFrame({
        "image": [f"f{i}.jpg" for i in range(6)], "object_id": ["obj10", "obj10", "007", "007", "obj2", "obj2"],
        "sequence_id": ["obj10_s0", "obj10_s0", "007_s0", "007_s0", "obj2_s0", "obj2_s0"],
        "frame_index": [0, 1, 0, 1, 0, 1], "present": [True, False, True, True, True, False],
        "score": [0.9, 0.8, 0.7 * scale, 0.6, 0.1, 0.05], "iou": [0.8, None, 0.7, 0.2, 0.6, None],
        "outcome": ["TP", "FP", "TP" if scale == 1.0 else "FN", "miss", "FN", "TN"],
    }).to_csv(outputs.frames, index=False)
    edges = [i / 10 for i in range(11)]
    pd.DataFrame({
        "bin": range(10), "lower": edges[:-1], "upper": edges[1:], "frames": [8, 0, 4, 0, 6, 0, 8, 0, 6, 8],
        "mean_score": [0.02, None, 0.25, None, 0.45, None, 0.65, None, 0.85, 0.95],
        "accuracy": [0.0, None, 0.25, None, 0.5, None, 0.75 * scale, None, 1.0, 0.875],
    }).to_csv(outputs.reliability, index=False)


def write_train_curve(path: Path, epochs: int = 4) -> None:
    """Columns as train.py writes them: train_<term>, and val_<metric> on every second epoch."""
    rows = []
    for e in range(epochs):
        row = {"epoch": e, "train_loss": 2.0 / (e + 1), "train_focal": 1.0 / (e + 1), "train_l1": 0.5 / (e + 1),
               "train_iou": 0.3 / (e + 1), "train_lr": 0.002 * (1 - e / epochs), "train_images_per_s": 50.0}
        if e % 2 == 1:
            row.update({"val_AP50": 0.2 * e, "val_AP": 0.1 * e, "val_success": 0.15 * e, "val_AP_tiny": -1.0})
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def make_report_root(root: Path, baseline: bool = True, train_curve: bool = True, sort_by: str = "AP50") -> Paths:
    """A folder with everything the report stage reads except an MLflow store."""
    paths = Paths(root)
    root.mkdir(parents=True, exist_ok=True)
    paths.params.write_text(yaml.safe_dump({"report": {
        "ablation_params": ["model.fusion.type", "model.correlation.kernel", "train.iou_type"], "sort_by": sort_by}}))
    write_scored(paths.evaluation, MODEL_METRICS)
    if baseline:
        write_scored(paths.baseline, BASELINE_METRICS, scale=0.5)
    if train_curve:
        write_train_curve(paths.train_plots)
    return paths


def make_mlflow_store(db: Path, runs: list = RUNS) -> str:
    """A real MLflow SQLite store with ``runs`` logged as train + evaluate would; returns its URI."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{db}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("needle", artifact_location=(db.parent / "mlartifacts").as_uri())
    for params, metrics in runs:
        run = client.create_run(experiment)
        for key, value in params.items():
            client.log_param(run.info.run_id, key, value)
        client.log_metric(run.info.run_id, "train_loss", 0.5)
        for key, value in (metrics or {}).items():
            client.log_metric(run.info.run_id, f"eval_{key}", value)
        client.set_terminated(run.info.run_id)
    return uri


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main",
         "-c", "commit.gpgsign=false", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout


def commit_all(root: Path, message: str = "metrics") -> None:
    """Make ``root`` a git repository (if needed) and commit everything in it."""
    if not (root / ".git").exists():
        git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)


@functools.cache
def _store_template() -> Path:
    # migrations make a new store slow (~5-10 s on 2 cores): build it once per session, copy it per test
    folder = Path(tempfile.mkdtemp(prefix="needle-report-mlflow-"))
    atexit.register(shutil.rmtree, folder, True)
    make_mlflow_store(folder / "mlflow.db")
    return folder / "mlflow.db"


def copy_store(db: Path) -> str:
    """A copy of the :data:`RUNS` store at ``db``; returns its URI."""
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_store_template(), db)
    return f"sqlite:///{db}"
