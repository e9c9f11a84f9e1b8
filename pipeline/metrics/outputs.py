"""Write a scored model's files (``ScoredOutputs``): metrics, tables, curves, predictions, gallery."""

from __future__ import annotations

from typing import Sequence

from pipeline.data.dataset import Sample
from pipeline.io import atomic_path, write_csv, write_json
from pipeline.metrics.gallery import draw_gallery
from pipeline.metrics.scoring import Scores, predictions_table, score_detections
from pipeline.metrics.topone import Detection
from pipeline.paths import ScoredOutputs


def write_scores(out: ScoredOutputs, scores: Scores) -> None:
    """Write the metrics JSON and the CSV tables of :class:`Scores`, each atomically."""
    write_json(out.metrics, scores.summary)
    write_csv(out.per_object, scores.per_object)
    write_csv(out.per_size, scores.per_size)
    write_csv(out.pr_curve, scores.pr_curve)
    write_csv(out.score_hist, scores.score_hist)
    write_csv(out.reliability, scores.reliability)
    write_csv(out.frames, scores.frames)
    write_csv(out.sequences, scores.sequences)


def score_and_write(
    out: ScoredOutputs,
    samples: Sequence[Sample],
    detections: Sequence[Detection],
    *,
    score_threshold: float,
    iou_threshold: float,
    ms_per_frame: float | None,
    gallery_frames: int,
    temporal_boxes: Sequence[Sequence[float] | None] | None = None,
    dtype: str | None = None,
    score_threshold_source: str | None = None,
    tracked_boxes: Sequence[Sequence[float] | None] | None = None,
) -> Scores:
    """Score ``detections`` (one ``(boxes [N,4] xyxy original px, scores [N])`` per sample) and
    write every file of ``out``; returns the scores. ``temporal_boxes``: one answer per sample
    after temporal smoothing, for ``st_iou_temporal``, ``tracked_boxes`` likewise after tracking over
    candidates, for ``st_iou_tracked``; ``dtype``: the model's arithmetic;
    ``score_threshold_source``: where the threshold came from (in the summary when given)."""
    scores = score_detections(samples, detections, score_threshold, iou_threshold, ms_per_frame, temporal_boxes,
                              dtype, score_threshold_source, tracked_boxes)
    write_scores(out, scores)
    write_csv(out.predictions, predictions_table(samples, detections))
    with atomic_path(out.gallery) as tmp:
        draw_gallery(samples, detections, scores.frames, gallery_frames, tmp, score_threshold, iou_threshold)
    return scores
