"""The files the report reads, loaded once into :class:`ReportInputs`.

Only the model's metrics.json is required; every other input may be missing, and
``ReportInputs.notes`` then holds the line the report prints instead (which file, which stage).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.cli import UserError
from pipeline.paths import Paths, ScoredOutputs
from pipeline.tables import read_csv

PER_OBJECT_COLUMNS = ("object_id", "frames", "frames_with_target", "success", "precision", "recall", "f1",
                      "mean_iou", "fp_rate")
PER_SIZE_COLUMNS = ("size", "min_px", "max_px", "frames", "AP", "success")
PR_CURVE_COLUMNS = ("threshold", "precision", "recall")
SEQUENCE_COLUMNS = ("sequence_id", "object_id", "frames", "frames_with_target", "st_iou", "st_iou_temporal",
                    "st_iou_tracked")
RELIABILITY_COLUMNS = ("bin", "lower", "upper", "frames", "mean_score", "accuracy")
FRAME_COLUMNS = ("object_id", "present", "iou", "outcome")


@dataclass(frozen=True)
class Scored:
    """What one scored model (``evaluate`` or ``baseline``) wrote; tables are None when missing."""

    metrics: dict[str, Any]
    per_object: pd.DataFrame | None = None
    per_size: pd.DataFrame | None = None
    pr_curve: pd.DataFrame | None = None
    gallery: Path | None = None
    sequences: pd.DataFrame | None = None
    reliability: pd.DataFrame | None = None  # top-1 score calibration per score bin
    frames: pd.DataFrame | None = None  # one row per frame: top-1 outcome (the bootstrap's input)
    points_lost: dict[str, Any] | None = None  # points_lost.json: the stage that lost each frame, summed


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows that comes from files. ``notes[name]`` says why ``name`` is missing."""

    model: Scored
    baseline: Scored | None
    train_curve: pd.DataFrame | None
    notes: dict[str, str] = field(default_factory=dict)
    real: Scored | None = None  # the model on the real-photo check set, where there is one


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to the repository root, with ``/``: the same text on every machine."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def read_metrics(path: Path, root: Path, stage: str) -> dict[str, Any]:
    """A metrics.json as a dict; NaN/inf become None (undefined). Errors name the file and the stage."""
    shown = display_path(path, root)
    if not path.is_file():
        raise UserError(f"{shown} does not exist; it is made by stage {stage} (run `dvc repro {stage}`)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{shown}: cannot read metrics ({exc}); re-run stage {stage}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{shown}: expected a JSON object of metrics, got {type(raw).__name__}; re-run stage {stage}")
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in raw.items()}


def read_table(
    path: Path, root: Path, stage: str, columns: tuple[str, ...], text_columns: tuple[str, ...] = ()
) -> pd.DataFrame | None:
    """A CSV with at least ``columns``, or None when the file is absent. Ids stay text (``"007"``, ``"NA"``)."""
    if not path.is_file():
        return None
    shown = display_path(path, root)
    try:
        frame = read_csv(path, text_columns)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    except (OSError, ValueError) as exc:
        raise UserError(f"{shown}: cannot read CSV ({exc}); re-run stage {stage}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UserError(f"{shown}: missing column(s) {', '.join(missing)}; re-run stage {stage}")
    return frame


def _missing_note(what: str, path: Path, root: Path, stage: str) -> str:
    return f"No {what}: `{display_path(path, root)}` not found (made by stage `{stage}`)."


def read_scored(outputs: ScoredOutputs, root: Path, stage: str, notes: dict[str, str], prefix: str = "") -> Scored:
    """Metrics (required) and the optional tables and gallery of one scored model."""
    metrics = read_metrics(outputs.metrics, root, stage)
    per_object = read_table(outputs.per_object, root, stage, PER_OBJECT_COLUMNS, ("object_id",))
    per_size = read_table(outputs.per_size, root, stage, PER_SIZE_COLUMNS, ("size",))
    pr_curve = read_table(outputs.pr_curve, root, stage, PR_CURVE_COLUMNS)
    gallery = outputs.gallery if outputs.gallery.is_file() else None
    sequences = read_table(outputs.sequences, root, stage, SEQUENCE_COLUMNS, ("sequence_id", "object_id"))
    reliability = read_table(outputs.reliability, root, stage, RELIABILITY_COLUMNS)
    frames = read_table(outputs.frames, root, stage, FRAME_COLUMNS, ("object_id", "sequence_id"))
    for name, value, what, path in (
        ("per_object", per_object, "per-object results", outputs.per_object),
        ("per_size", per_size, "per-size results", outputs.per_size),
        ("pr_curve", pr_curve, "precision-recall curve", outputs.pr_curve),
        ("gallery", gallery, "gallery", outputs.gallery),
        ("sequences", sequences, "per-sequence results", outputs.sequences),
        ("reliability", reliability, "reliability table", outputs.reliability),
    ):
        if value is None:
            notes[prefix + name] = _missing_note(what, path, root, stage)
    lost = read_metrics(outputs.points_lost_summary, root, stage) if outputs.points_lost_summary.is_file() else None
    return Scored(metrics, per_object, per_size, pr_curve, gallery, sequences, reliability, frames, lost)


def read_inputs(paths: Paths) -> ReportInputs:
    """Read the model's results (required), the baseline's, the training curve and the model's
    results on the real-photo check set (optional)."""
    root = paths.root
    notes: dict[str, str] = {}
    model = read_scored(paths.evaluation, root, "evaluate", notes)
    baseline = None
    if paths.baseline.metrics.is_file():
        baseline = read_scored(paths.baseline, root, "baseline", notes, prefix="baseline_")
    else:
        notes["baseline"] = _missing_note("baseline results", paths.baseline.metrics, root, "baseline")
    train_curve = read_table(paths.train_plots, root, "train", ("epoch",))
    if train_curve is None or train_curve.empty:
        train_curve = None
        notes["train_curve"] = _missing_note("training curve", paths.train_plots, root, "train")
    real = None
    real_metrics = paths.realset_evaluation.metrics
    if real_metrics.is_file() and read_metrics(real_metrics, root, "evaluate").get("available", True):
        real = read_scored(paths.realset_evaluation, root, "evaluate", notes, prefix="real_")
    return ReportInputs(model, baseline, train_curve, notes, real)
