"""Every file and folder the stages read or write, relative to the repository root.

dvc.yaml names the same paths; ``tests/test_dvc_pipeline.py`` checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
        return self.root / "reports" / "train_curve.csv"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"
