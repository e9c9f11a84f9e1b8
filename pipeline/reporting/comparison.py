"""The report's comparison: the metrics against their previous committed version, with the noise.

The base commit is :func:`~pipeline.reporting.committed.find_base`'s; the noise is the bootstrap
SE over objects (:mod:`pipeline.reporting.noise`) of each change: paired when the base commit's
``frames.csv`` holds the same objects, both runs drawn on their own when it holds others, and of
the new values alone when it has none.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.paths import ScoredOutputs
from pipeline.reporting.committed import Base, find_base, metrics_diff, show_file
from pipeline.reporting.inputs import Scored
from pipeline.reporting.noise import ObjectSums, object_sums, standard_errors


@dataclass(frozen=True)
class Comparison:
    """``base`` (None: nothing to compare with), the ``diff`` table, the SE of each change, and how
    it was drawn (``kind``: paired, independent, new; see the module doc)."""

    base: Base | None
    diff: pd.DataFrame | None = None
    noise: dict[str, float | None] = field(default_factory=dict)
    kind: str = "new"
    objects: int = 0


def scored_sums(scored: Scored) -> ObjectSums | None:
    """The bootstrap's per-object sums of a scored model, None without its ``frames.csv``."""
    if scored.frames is None:
        return None
    return object_sums(scored.frames, scored.sequences, float(scored.metrics.get("iou_threshold") or 0.5))


def _table_at(root: Path, commit: str, file: Path) -> pd.DataFrame | None:
    text = show_file(root, commit, file)
    if text is None:
        return None
    return pd.read_csv(io.StringIO(text), dtype={"object_id": str, "sequence_id": str}, keep_default_na=False,
                       na_values={c: [""] for c in ("iou", "score", "st_iou", "st_iou_temporal")})


def compare(root: Path, outputs: ScoredOutputs, model: Scored, order: list[str]) -> Comparison:
    """The model's metrics (``outputs.metrics`` as ``model``) against their base commit."""
    current = json.loads(outputs.metrics.read_text())
    base = find_base(root, outputs.metrics, current)
    if base is None:
        return Comparison(None)
    diff = metrics_diff(base.metrics, model.metrics, order=order)
    new = scored_sums(model)
    if new is None:
        return Comparison(base, diff)
    old_frames = _table_at(root, base.commit, outputs.frames)
    old = None
    if old_frames is not None and set(("object_id", "present", "iou", "outcome")) <= set(old_frames.columns):
        old = object_sums(old_frames, _table_at(root, base.commit, outputs.sequences),
                          float(base.metrics.get("iou_threshold") or 0.5))
    kind = "new" if old is None else "paired" if old.ids == new.ids else "independent"
    return Comparison(base, diff, standard_errors(new, old), kind, len(new.ids))
