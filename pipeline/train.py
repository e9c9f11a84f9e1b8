"""Stage ``train``: fit the detector on the prepared data (``python -m pipeline.train``).

Distributed: ``torchrun --nproc_per_node N -m pipeline.train`` (gloo on CPU, NCCL on GPU).
Writes models/{last,best}.pt and models/run.json, reports/train_metrics.json (DVC metrics),
reports/train_curve.csv (one row per epoch) and reports/val_curve.csv (the validated epochs only;
both DVC plots); logs everything to MLflow: params, tags (git commit, dirty tree, DVC experiment),
metrics, system metrics, the prepared manifest as the dataset, the training curves and
``best.pt``'s detector as the run's model (registered with ``train.register_model``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.cli import run_stage
from pipeline.config import load_params
from pipeline.engine.curves import validation_rows
from pipeline.engine.model_logging import log_detector
from pipeline.engine.plots import plot_training_curves
from pipeline.engine.trainer import fit
from pipeline.io import write_csv, write_json
from pipeline.paths import Paths


def main() -> None:
    paths = Paths()
    params = load_params(paths.params)
    summary = fit(params, paths)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    tracker = summary.pop("tracker")
    history = pd.DataFrame(summary.pop("history"))
    write_csv(paths.train_plots, history)
    write_csv(paths.val_plots, validation_rows(history))
    write_json(paths.train_metrics, {k: v for k, v in summary.items() if k not in ("run_id", "tracking_uri")})
    write_json(paths.models / "run.json", {"run_id": summary["run_id"], "tracking_uri": summary["tracking_uri"]})
    with tempfile.TemporaryDirectory() as tmp:
        figure = plot_training_curves(history, Path(tmp) / "training_curves.png")
        tracker.log_artifact(figure, "figures")
    tracker.log_artifact(paths.train_metrics)
    log_detector(tracker, paths.models / "best.pt", register=params.train.register_model)
    tracker.end()


if __name__ == "__main__":
    run_stage(main, __doc__)
