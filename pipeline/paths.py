"""Every file and folder the stages read or write, relative to the repository root.

dvc.yaml names the same paths; ``tests/test_dvc_pipeline.py`` checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ScoredOutputs:
    """The files a scored model writes (stages ``evaluate`` and ``baseline``), in one folder."""

    folder: Path

    @property
    def metrics(self) -> Path:
        """Summary metrics (DVC metrics): AP, AP50, ..., precision, recall, f1, success, ..."""
        return self.folder / "metrics.json"

    @property
    def per_object(self) -> Path:
        return self.folder / "per_object.csv"

    @property
    def per_size(self) -> Path:
        return self.folder / "per_size.csv"

    @property
    def pr_curve(self) -> Path:
        """Top-1 precision / recall against the score threshold (DVC plots)."""
        return self.folder / "pr_curve.csv"

    @property
    def score_hist(self) -> Path:
        """Top-1 scores of frames with and without the target, binned (DVC plots)."""
        return self.folder / "score_hist.csv"

    @property
    def reliability(self) -> Path:
        """Top-1 score calibration: per score bin its frames, mean score and share correct."""
        return self.folder / "reliability.csv"

    @property
    def frames(self) -> Path:
        """One row per frame: top-1 score, IoU and outcome (TP/FP/FN/TN)."""
        return self.folder / "frames.csv"

    @property
    def sequences(self) -> Path:
        """One row per sequence (video): frame counts and spatio-temporal IoU, raw and smoothed."""
        return self.folder / "sequences.csv"

    @property
    def predictions(self) -> Path:
        """One row per detection: image, object_id, x1, y1, x2, y2, score."""
        return self.folder / "predictions.csv"

    @property
    def gallery(self) -> Path:
        return self.folder / "gallery.png"

    @property
    def points_lost(self) -> Path:
        """Per frame, the stage that lost it (:mod:`pipeline.metrics.points_lost`)."""
        return self.folder / "points_lost.csv"

    @property
    def points_lost_summary(self) -> Path:
        """Frames and shares per stage, achieved vs candidate-oracle ST-IoU."""
        return self.folder / "points_lost.json"


@dataclass(frozen=True)
class Paths:
    """Stage inputs and outputs under one root (the repository, or a test's temp dir)."""

    root: Path = Path(".")

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    # prepare
    @property
    def prepared(self) -> Path:
        """Output folder of ``prepare``: manifest.csv, rejected.csv, and demo/ when generated."""
        return self.root / "data" / "prepared"

    @property
    def manifest(self) -> Path:
        return self.prepared / "manifest.csv"

    @property
    def rejected(self) -> Path:
        return self.prepared / "rejected.csv"

    @property
    def demo_root(self) -> Path:
        return self.prepared / "demo"

    @property
    def reference_crops(self) -> Path:
        """Reference photos ``prepare`` crops for formats without their own (COCO)."""
        return self.prepared / "references"

    @property
    def video_frames(self) -> Path:
        """Frames ``prepare`` decodes from the videos of the ``video`` format, as JPEGs."""
        return self.prepared / "frames"

    @property
    def data_stats(self) -> Path:
        return self.root / "data" / "stats.json"

    # resize_templates
    @property
    def templates(self) -> Path:
        """Output folder of ``resize_templates``: resized images and templates.csv."""
        return self.root / "data" / "templates"

    @property
    def templates_manifest(self) -> Path:
        return self.templates / "templates.csv"

    # train
    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def train_metrics(self) -> Path:
        return self.root / "reports" / "train_metrics.json"

    @property
    def train_plots(self) -> Path:
        """One row per epoch: loss terms, learning rate, and the validation metrics where validated."""
        return self.root / "reports" / "train_curve.csv"

    @property
    def val_plots(self) -> Path:
        """One row per validated epoch only (DVC plots: no empty cells between validations)."""
        return self.root / "reports" / "val_curve.csv"

    # evaluate / baseline
    @property
    def evaluation(self) -> ScoredOutputs:
        """Outputs of ``evaluate`` (the trained model on the val split)."""
        return ScoredOutputs(self.root / "reports" / "evaluate")

    @property
    def realset(self) -> Path:
        """The real-photo check set (stage ``realset``, refdet layout)."""
        return self.root / "data" / "realset"

    @property
    def realset_evaluation(self) -> ScoredOutputs:
        """Outputs of ``evaluate`` on the real-photo check set."""
        return ScoredOutputs(self.root / "reports" / "realset")

    @property
    def baseline(self) -> ScoredOutputs:
        """Outputs of ``baseline`` (OpenCV template matching on the val split)."""
        return ScoredOutputs(self.root / "reports" / "baseline")

    # report
    @property
    def report(self) -> Path:
        return self.root / "reports" / "metrics.md"

    @property
    def figures(self) -> Path:
        """PNGs embedded in the report."""
        return self.root / "reports" / "figures"

    # python -m pipeline.tune_temporal
    @property
    def temporal_tuning(self) -> Path:
        """The tracker's settings tried on the val split and the chosen ones."""
        return self.root / "reports" / "tuning"

    @property
    def run_table(self) -> Path:
        """The MLflow runs the ablation table shows, committed (``python -m pipeline.export_runs``)."""
        return self.root / "reports" / "runs.csv"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"
