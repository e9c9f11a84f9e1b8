"""Per-frame metrics of the single best detection ("top-1"), the way a user of the detector reads it.

needle answers one question per frame: where is the object, or is it absent? So each frame is
judged by its highest-scoring detection only:

=========  ==============================================================================
outcome    meaning (``fired`` = top-1 score >= the score threshold)
=========  ==============================================================================
TP         target present, fired, IoU >= the IoU threshold
FP         target absent, fired
miss       target present, fired, but IoU below the threshold (counts as FP *and* FN)
FN         target present, nothing fired
TN         target absent, nothing fired
=========  ==============================================================================

precision = TP / fired, recall = TP / frames with the target, F1 their harmonic mean, mean IoU over
TP frames, success = share of frames with the target whose top-1 box (any score) hits, FP rate =
fired frames among frames without the target. Undefined values (no frame to count) are None.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

Box = Sequence[float]
Detection = tuple[np.ndarray, np.ndarray]  # boxes [N, 4] xyxy, scores [N], sorted by score desc


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of ``[N, 4]`` ``xyxy`` boxes ``a[i]`` and ``b[i]`` -> ``[N]``.

    torchvision's ``box_iou`` is all-pairs (an ``N x N`` matrix, minutes for 10k frames); the
    metrics need only the diagonal, and must not import the detector (the baseline stage scores
    with them too).
    """
    lt = np.maximum(a[:, :2], b[:, :2])
    rb = np.minimum(a[:, 2:], b[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a + area_b - inter)


def top1_table(gt_boxes: Sequence[Box | None], detections: Sequence[Detection]) -> pd.DataFrame:
    """One row per frame: ``present`` (bool), ``score`` (top-1 score, 0 without detections) and
    ``iou`` (IoU of the top-1 box with the truth; NaN when either is missing).

    gt_boxes: per frame ``(x1, y1, x2, y2)`` or None when the target is absent.
    detections: per frame ``(boxes [N, 4] xyxy, scores [N])``, in the same pixels as the truth.
    """
    if len(gt_boxes) != len(detections):
        raise ValueError(f"{len(gt_boxes)} frames of truth but {len(detections)} of detections")
    present = np.array([gt is not None for gt in gt_boxes], dtype=bool)
    score = np.zeros(len(gt_boxes))
    top = np.full((len(gt_boxes), 4), np.nan)
    for i, (boxes, scores) in enumerate(detections):
        scores = np.asarray(scores, dtype=float).reshape(-1)
        if scores.size:
            j = int(np.argmax(scores))  # do not rely on the caller's order
            score[i] = scores[j]
            top[i] = np.asarray(boxes, dtype=float).reshape(-1, 4)[j]
    truth = np.array([gt if gt is not None else [np.nan] * 4 for gt in gt_boxes], dtype=float).reshape(-1, 4)
    iou = np.full(len(gt_boxes), np.nan)
    both = present & ~np.isnan(top).any(axis=1)
    if both.any():
        iou[both] = paired_iou(top[both], truth[both])
    return pd.DataFrame({"present": present, "score": score, "iou": iou})


def outcomes(table: pd.DataFrame, score_threshold: float, iou_threshold: float) -> pd.Series:
    """The outcome (TP, FP, miss, FN, TN; see module doc) of every row of :func:`top1_table`."""
    fired = table["score"].to_numpy() >= score_threshold
    present = table["present"].to_numpy(dtype=bool)
    hit = np.nan_to_num(table["iou"].to_numpy(dtype=float), nan=0.0) >= iou_threshold
    out = np.select(
        [present & fired & hit, ~present & fired, present & fired, present],
        ["TP", "FP", "miss", "FN"],
        default="TN",
    )
    return pd.Series(out, index=table.index, name="outcome")


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def summarize(table: pd.DataFrame, score_threshold: float, iou_threshold: float) -> dict[str, float | int | None]:
    """precision, recall, f1, mean_iou, success, fp_rate and frame counts of a top-1 table."""
    outcome = outcomes(table, score_threshold, iou_threshold)
    present = table["present"].to_numpy(dtype=bool)
    counts = outcome.value_counts()
    tp = int(counts.get("TP", 0))
    fired = tp + int(counts.get("FP", 0)) + int(counts.get("miss", 0))
    precision, recall = _ratio(tp, fired), _ratio(tp, present.sum())
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    hits_any_score = np.nan_to_num(table["iou"].to_numpy(dtype=float), nan=0.0) >= iou_threshold
    tp_iou = table["iou"][outcome == "TP"]
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "mean_iou": float(tp_iou.mean()) if len(tp_iou) else None,
        "success": _ratio((hits_any_score & present).sum(), present.sum()),
        "fp_rate": _ratio(int(counts.get("FP", 0)), (~present).sum()),
        "frames": int(len(table)),
        "frames_with_target": int(present.sum()),
    }


def pr_curve(table: pd.DataFrame, iou_threshold: float, thresholds: np.ndarray | None = None) -> pd.DataFrame:
    """Top-1 precision and recall as the score threshold sweeps ``thresholds`` (default 0..1 by
    0.01). Columns ``threshold, precision, recall``; precision is 1.0 where nothing fires (the
    usual convention, so the curve starts at the top left)."""
    if thresholds is None:
        thresholds = np.round(np.linspace(0.0, 1.0, 101), 2)
    score = table["score"].to_numpy(dtype=float)
    present = table["present"].to_numpy(dtype=bool)
    hit = present & (np.nan_to_num(table["iou"].to_numpy(dtype=float), nan=0.0) >= iou_threshold)
    fired = score[None, :] >= np.asarray(thresholds, dtype=float)[:, None]  # [T, F]
    n_fired = fired.sum(1)
    tp = (fired & hit[None, :]).sum(1)
    precision = np.where(n_fired > 0, tp / np.maximum(n_fired, 1), 1.0)
    recall = tp / max(int(present.sum()), 1)
    return pd.DataFrame({"threshold": thresholds, "precision": precision, "recall": recall})


def score_histogram(table: pd.DataFrame, bins: int = 20) -> pd.DataFrame:
    """Counts of top-1 scores in ``bins`` equal bins over [0, 1], for frames with and without the
    target. Columns ``score_bin`` (lower edge), ``with_target``, ``without_target``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    score = np.clip(table["score"].to_numpy(dtype=float), 0.0, 1.0)
    present = table["present"].to_numpy(dtype=bool)
    with_target, _ = np.histogram(score[present], edges)
    without_target, _ = np.histogram(score[~present], edges)
    return pd.DataFrame({"score_bin": np.round(edges[:-1], 4), "with_target": with_target, "without_target": without_target})
