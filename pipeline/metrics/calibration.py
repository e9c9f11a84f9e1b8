"""The presence decision ("is the target in this frame?") and how well the top-1 score predicts it.

**Threshold selection** (:func:`choose_threshold`): the score threshold the top-1 box must reach
to count as an answer is chosen on a labelled set (training's validation split) as the one that
maximises a metric of the top-1 answers (``train.presence_metric``):

* ``f1``: top-1 F1 (:mod:`pipeline.metrics.topone`: a hit is a fired frame with the target whose
  top-1 box reaches the IoU threshold);
* ``st_iou``: the mean ST-IoU over sequences (:mod:`pipeline.metrics.stiou`) of the per-frame
  answers "top-1 box where it scores at least the threshold".

The candidates are the observed top-1 scores at or above :data:`FLOOR` plus ``FLOOR`` itself (a
frame whose best box scores below it never counts as an answer, so "fire on every frame, even
without a box" is never chosen). Between candidates that reach the same value the **highest**
threshold wins: the same validation score with fewer answers, i.e. fewer false positives on new
data. When the metric is undefined for every candidate (no frame, or no frame with the target
for F1), the fallback threshold is returned with value None.

**Calibration** (:func:`reliability_table`, :func:`expected_calibration_error`): the top-1 score
read as the probability that the top-1 box is correct (the target is in the frame and the box hits
it at IoU >= the IoU threshold; a frame without the target is never correct). The scores are cut
into equal-width bins over [0, 1] (the last bin includes 1); ECE is the frame-weighted mean over
the bins of ``|accuracy - mean score|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import PresenceMetric

#: The lowest threshold considered.
FLOOR = 0.01

#: The threshold of a checkpoint that saved none (older runs), and of a set where no candidate
#: has a defined metric.
DEFAULT_THRESHOLD = 0.3

#: Columns of ``reliability.csv``.
RELIABILITY_COLUMNS = ["bin", "lower", "upper", "frames", "mean_score", "accuracy"]


@dataclass(frozen=True)
class PresenceThreshold:
    """A chosen threshold: the ``metric`` it maximised, the ``value`` reached there (None when
    undefined) and the number of ``frames`` it was chosen on."""

    score_threshold: float
    metric: str
    value: float | None
    frames: int

    def as_dict(self) -> dict[str, float | str | int | None]:
        """As saved in ``best.pt`` (key ``presence``) and the train summary."""
        return {"score_threshold": self.score_threshold, "metric": self.metric, "value": self.value,
                "frames": self.frames}


def correct(table: pd.DataFrame, iou_threshold: float) -> np.ndarray:
    """``[F]`` bool per row of a :func:`~pipeline.metrics.topone.top1_table`: the target is there
    and the top-1 box hits it at ``iou_threshold``."""
    present = table["present"].to_numpy(dtype=bool)
    return present & (np.nan_to_num(table["iou"].to_numpy(dtype=float), nan=0.0) >= iou_threshold)


def candidate_thresholds(scores: np.ndarray, floor: float = FLOOR) -> np.ndarray:
    """``[T]`` ascending: ``floor`` and every distinct score in ``scores`` at or above it."""
    scores = np.asarray(scores, dtype=float).reshape(-1)
    return np.unique(np.concatenate([[floor], scores[scores >= floor]]))


def f1_curve(table: pd.DataFrame, thresholds: np.ndarray, iou_threshold: float) -> np.ndarray:
    """``[T]`` top-1 F1 at each threshold (NaN where undefined: nothing fires or no target)."""
    score = table["score"].to_numpy(dtype=float)
    present = table["present"].to_numpy(dtype=bool)
    hit = correct(table, iou_threshold)
    fired = score[None, :] >= np.asarray(thresholds, dtype=float)[:, None]  # [T, F]
    n_fired = fired.sum(1)
    tp = (fired & hit[None, :]).sum(1)
    n_present = int(present.sum())
    if n_present == 0:
        return np.full(len(thresholds), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_fired > 0, tp / np.maximum(n_fired, 1), np.nan)
        recall = tp / n_present
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return np.where(np.isnan(precision), np.nan, f1)


def st_iou_curve(table: pd.DataFrame, sequence_ids: Sequence[str], thresholds: np.ndarray,
                 chunk: int = 256) -> np.ndarray:
    """``[T]`` mean ST-IoU over sequences at each threshold (NaN without frames).

    Per sequence: sum of the top-1 IoU over frames with the target that fire, divided by the
    frames with the target or firing (1 when neither exists), as :func:`pipeline.metrics.stiou.st_iou`.
    """
    if len(sequence_ids) != len(table):
        raise ValueError(f"{len(sequence_ids)} sequence ids but {len(table)} frames")
    thresholds = np.asarray(thresholds, dtype=float)
    if len(table) == 0:
        return np.full(len(thresholds), np.nan)
    codes, _ = pd.factorize(pd.Series([str(s) for s in sequence_ids]), sort=True)
    order = np.argsort(codes, kind="stable")
    codes = codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    score = table["score"].to_numpy(dtype=float)[order]
    present = table["present"].to_numpy(dtype=bool)[order]
    iou = np.nan_to_num(table["iou"].to_numpy(dtype=float)[order], nan=0.0) * present
    out = np.empty(len(thresholds))
    for lo in range(0, len(thresholds), chunk):  # [C, F] at a time: bounded memory on big sets
        fired = score[None, :] >= thresholds[lo:lo + chunk, None]
        inter = np.add.reduceat(fired * iou[None, :], starts, axis=1)
        union = np.add.reduceat((fired | present[None, :]).astype(float), starts, axis=1)
        per_seq = np.where(union > 0, inter / np.maximum(union, 1.0), 1.0)
        out[lo:lo + chunk] = per_seq.mean(axis=1)
    return out


def choose_threshold(
    table: pd.DataFrame,
    metric: PresenceMetric,
    iou_threshold: float,
    sequence_ids: Sequence[str] | None = None,
    floor: float = FLOOR,
    fallback: float = DEFAULT_THRESHOLD,
) -> PresenceThreshold:
    """The candidate threshold that maximises ``metric`` on a top-1 table (see the module doc).

    table: :func:`~pipeline.metrics.topone.top1_table` rows (``present``, ``score``, ``iou``).
    sequence_ids: per row its sequence (required for ``st_iou``).
    """
    thresholds = candidate_thresholds(table["score"].to_numpy(dtype=float), floor)
    if metric == "f1":
        values = f1_curve(table, thresholds, iou_threshold)
    elif metric == "st_iou":
        if sequence_ids is None:
            raise ValueError("choose_threshold: st_iou needs sequence_ids")
        values = st_iou_curve(table, sequence_ids, thresholds)
    else:
        raise ValueError(f"unknown presence metric {metric!r}")
    if np.isnan(values).all():
        return PresenceThreshold(float(fallback), metric, None, int(len(table)))
    best = np.nanmax(values)
    i = int(np.flatnonzero(values == best)[-1])  # ties: the highest threshold
    return PresenceThreshold(float(thresholds[i]), metric, float(best), int(len(table)))


def reliability_table(table: pd.DataFrame, iou_threshold: float, bins: int = 10) -> pd.DataFrame:
    """One row per equal-width score bin over [0, 1] (:data:`RELIABILITY_COLUMNS`): its edges,
    frames, mean top-1 score and accuracy (share correct; both NaN in an empty bin)."""
    score = np.clip(table["score"].to_numpy(dtype=float), 0.0, 1.0)
    ok = correct(table, iou_threshold)
    index = np.minimum((score * bins).astype(int), bins - 1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    frames = np.bincount(index, minlength=bins)
    score_sum = np.bincount(index, weights=score, minlength=bins)
    ok_sum = np.bincount(index, weights=ok.astype(float), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.where(frames > 0, score_sum / np.maximum(frames, 1), np.nan)
        accuracy = np.where(frames > 0, ok_sum / np.maximum(frames, 1), np.nan)
    return pd.DataFrame({"bin": np.arange(bins), "lower": np.round(edges[:-1], 6), "upper": np.round(edges[1:], 6),
                         "frames": frames.astype(int), "mean_score": mean_score, "accuracy": accuracy},
                        columns=RELIABILITY_COLUMNS)


def expected_calibration_error(reliability: pd.DataFrame) -> float | None:
    """ECE of a :func:`reliability_table`: ``sum_b frames_b / frames * |accuracy_b - mean_score_b|``
    (None without frames)."""
    frames = reliability["frames"].to_numpy(dtype=float)
    total = frames.sum()
    if total == 0:
        return None
    gap = np.abs(reliability["accuracy"].to_numpy(dtype=float) - reliability["mean_score"].to_numpy(dtype=float))
    return float(np.sum(np.where(frames > 0, frames * np.nan_to_num(gap), 0.0)) / total)
