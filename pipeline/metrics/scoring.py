"""Score one model's detections on a set of frames: COCO AP plus top-1 frame metrics, overall, per
object and per object size. The evaluate and baseline stages both use it, so their numbers compare.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from pipeline.data.dataset import Sample
from pipeline.metrics.calibration import expected_calibration_error, reliability_table
from pipeline.metrics.coco import SIZE_BINS, coco_ap
from pipeline.metrics.stiou import sequence_table, summarize_sequences, thresholded, top1
from pipeline.metrics.topone import Detection, outcomes, pr_curve, score_histogram, summarize, top1_table

#: Columns of ``per_object.csv``.
PER_OBJECT_COLUMNS = ["object_id", "frames", "frames_with_target", "success", "precision", "recall", "f1", "mean_iou", "fp_rate"]
#: Columns of ``per_size.csv``.
PER_SIZE_COLUMNS = ["size", "min_px", "max_px", "frames", "AP", "success"]
#: Columns of ``frames.csv``.
FRAME_COLUMNS = ["image", "object_id", "sequence_id", "frame_index", "present", "score", "iou", "outcome"]


@dataclass(frozen=True)
class Scores:
    """Everything the scored-model outputs hold (see :class:`pipeline.paths.ScoredOutputs`)."""

    summary: dict[str, float | int | None]
    per_object: pd.DataFrame
    per_size: pd.DataFrame
    pr_curve: pd.DataFrame
    score_hist: pd.DataFrame
    frames: pd.DataFrame
    sequences: pd.DataFrame  # one row per sequence: ST-IoU (:data:`pipeline.metrics.stiou.SEQUENCE_COLUMNS`)
    reliability: pd.DataFrame  # top-1 score calibration (:data:`pipeline.metrics.calibration.RELIABILITY_COLUMNS`)


def _clean(value: float | int | None) -> float | int | None:
    """pycocotools' -1 and NaN both mean "undefined": None (null in JSON)."""
    if value is None or (isinstance(value, float) and (math.isnan(value) or value == -1.0)):
        return None
    return value


def box_side(box: Sequence[float]) -> float:
    """Object size as COCO bins it: sqrt of the box area, in pixels."""
    return math.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def score_detections(
    samples: Sequence[Sample],
    detections: Sequence[Detection],
    score_threshold: float,
    iou_threshold: float,
    ms_per_frame: float | None = None,
    temporal_boxes: Sequence[Sequence[float] | None] | None = None,
    dtype: str | None = None,
    score_threshold_source: str | None = None,
    tracked_boxes: Sequence[Sequence[float] | None] | None = None,
) -> Scores:
    """Score per-frame detections (original pixels, one entry per sample, same order).

    The summary holds AP, AP50, AP75, AP per size bin (pycocotools), the top-1 metrics of
    :func:`pipeline.metrics.topone.summarize`, ``objects``, ``ms_per_frame``, both thresholds,
    and ``sequences`` with the mean ST-IoU over them (:mod:`pipeline.metrics.stiou`): ``st_iou``
    of the top-1 box above ``score_threshold`` per frame, ``st_iou_temporal`` of
    ``temporal_boxes`` (one answer per sample after temporal smoothing; None if not given),
    ``st_iou_tracked`` of ``tracked_boxes`` (after tracking over candidates; likewise),
    and ``inference_dtype``, the arithmetic the model ran in (``dtype``: fp32, bf16, fp16), which
    ``ms_per_frame`` depends on; ``ece``, the expected calibration error of the top-1 score
    (:mod:`pipeline.metrics.calibration`, 10 bins), and ``score_threshold_source`` when given.
    """
    if len(samples) != len(detections):
        raise ValueError(f"{len(samples)} frames but {len(detections)} detection lists")
    gt = [s.box for s in samples]
    sizes = [(s.width or 10_000, s.height or 10_000) for s in samples]
    ap = coco_ap(gt, detections, sizes, SIZE_BINS)
    table = top1_table(gt, detections)
    frames = pd.DataFrame({
        "image": [s.image for s in samples],
        "object_id": [s.object_id for s in samples],
        "sequence_id": [s.sequence_id for s in samples],
        "frame_index": [s.frame_index for s in samples],
    }).join(table)
    frames["outcome"] = outcomes(table, score_threshold, iou_threshold)

    summary: dict[str, float | int | None] = {k: _clean(v) for k, v in ap.items()}
    summary.update({k: _clean(v) for k, v in summarize(table, score_threshold, iou_threshold).items()})
    summary["objects"] = int(frames["object_id"].nunique())
    boxes, top_scores = top1(detections)
    sequences = sequence_table(
        frames["sequence_id"].tolist(), frames["object_id"].tolist(), frames["frame_index"].tolist(), gt,
        thresholded(boxes, top_scores, score_threshold), temporal_boxes, tracked_boxes,
    )
    summary.update({k: _clean(v) for k, v in summarize_sequences(sequences).items()})
    summary["ms_per_frame"] = _clean(ms_per_frame)
    summary["inference_dtype"] = dtype
    summary["score_threshold"] = score_threshold
    if score_threshold_source is not None:
        summary["score_threshold_source"] = score_threshold_source
    summary["iou_threshold"] = iou_threshold
    reliability = reliability_table(table, iou_threshold)
    summary["ece"] = _clean(expected_calibration_error(reliability))

    per_object = [
        {"object_id": obj, **summarize(group.reset_index(drop=True), score_threshold, iou_threshold)}
        for obj, group in frames.groupby("object_id", sort=True)
    ]
    per_size = []
    sides = np.array([box_side(b) if b is not None else np.nan for b in gt])
    hit = np.nan_to_num(frames["iou"].to_numpy(dtype=float), nan=0.0) >= iou_threshold
    for name, (lo, hi) in SIZE_BINS.items():
        in_bin = (sides >= lo) & (sides < hi)
        per_size.append({
            "size": name, "min_px": lo, "max_px": hi, "frames": int(in_bin.sum()),
            "AP": _clean(ap.get(f"AP_{name}")),
            "success": float(hit[in_bin].mean()) if in_bin.any() else None,
        })
    return Scores(
        summary=summary,
        per_object=pd.DataFrame(per_object, columns=PER_OBJECT_COLUMNS),
        per_size=pd.DataFrame(per_size, columns=PER_SIZE_COLUMNS),
        pr_curve=pr_curve(table, iou_threshold),
        score_hist=score_histogram(table),
        frames=frames[FRAME_COLUMNS],
        sequences=sequences,
        reliability=reliability,
    )


def predictions_table(samples: Sequence[Sample], detections: Sequence[Detection]) -> pd.DataFrame:
    """One row per detection: ``image, object_id, x1, y1, x2, y2, score`` (frames in sample order,
    detections by score)."""
    rows = []
    for sample, (boxes, scores) in zip(samples, detections):
        order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
        for j in order:
            x1, y1, x2, y2 = (float(v) for v in np.asarray(boxes).reshape(-1, 4)[j])
            rows.append((sample.image, sample.object_id, x1, y1, x2, y2, float(scores[j])))
    return pd.DataFrame(rows, columns=["image", "object_id", "x1", "y1", "x2", "y2", "score"])
