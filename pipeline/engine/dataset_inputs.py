"""The prepared manifest as the run's dataset inputs (MLflow's Dataset column): its train rows in
context ``training``, its val rows in context ``validation``. MLflow keeps each split's schema,
row count and a digest of its rows, so runs on other data show another digest."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from pipeline.engine.tracking import Tracker

#: Manifest split -> MLflow input context.
CONTEXTS = {"train": "training", "val": "validation"}


def log_manifest(tracker: Tracker, manifest: Path, root: Path | None = None) -> None:
    """Log ``manifest``'s splits as inputs of ``tracker``'s run; the source is the manifest's
    path relative to ``root`` (default: the working directory), so it holds no machine's folder."""
    if tracker.run_id is None or not manifest.is_file():
        return
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    source = os.path.relpath(manifest.resolve(), (root or Path.cwd()).resolve())

    def _log(mlflow) -> None:
        import mlflow.data

        for split, context in CONTEXTS.items():
            rows = frame[frame["split"] == split].reset_index(drop=True)
            if len(rows):
                with warnings.catch_warnings():  # MLflow's own: its two local-file source types, pandas 4
                    warnings.simplefilter("ignore")
                    dataset = mlflow.data.from_pandas(rows, source=source, name=f"manifest-{split}")
                mlflow.log_input(dataset, context=context)

    tracker.apply("log_input", _log)
