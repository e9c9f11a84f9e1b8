"""Where the points are lost: which stage of the detector failed each frame.

A frame with the target whose final answer hits it (IoU at or above the threshold) is a
``success``; any other gets the first stage that failed it, in pipeline order:

1. ``no candidate``: the model gave no box at all;
2. ``localisation miss``: no candidate reaches the IoU threshold;
3. ``matching error``: a candidate hits, the top-1 does not;
4. ``threshold rejection``: the top-1 hits but scores below the presence threshold;
5. ``temporal removal``: the per-frame answer hits, the temporal answer (smoothing or tracking,
   ``temporal.method``) does not.

A frame without the target is ``answered`` (a false positive) or ``quiet``. Beside them, the
candidate oracle: the ST-IoU of answering the best candidate on each frame with the target and
nothing elsewhere, the most any choice among the candidates could score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.metrics.stiou import Box, sequence_table, summarize_sequences
from pipeline.metrics.topone import Detection, paired_iou

#: Outcomes of frames with the target, in pipeline order, then those of frames without it.
PRESENT_STAGES = ("no candidate", "localisation miss", "matching error", "threshold rejection", "temporal removal",
                  "success")
ABSENT_STAGES = ("answered", "quiet")
COLUMNS = ["sequence_id", "frame_index", "present", "stage", "best_iou"]


def _ious(boxes: np.ndarray, truth: Box) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.nan_to_num(paired_iou(boxes, np.repeat(np.asarray(truth, np.float64)[None], len(boxes), 0)), nan=0.0)


def frame_stages(
    truth: Sequence[Box | None],
    detections: Sequence[Detection],
    final: Sequence[Box | None],
    score_threshold: float,
    iou_threshold: float,
) -> tuple[list[str], np.ndarray, list[np.ndarray | None]]:
    """Per frame (same order in all): the stage (see the module docstring), the best candidate's
    IoU with the truth (NaN without a target or candidate), and the candidate oracle's answer.

    ``detections``: each frame's ``(boxes [N, 4], scores [N])``; ``final``: the answer the
    pipeline gives (a box or None) after any temporal step.
    """
    stages: list[str] = []
    best = np.full(len(truth), np.nan)
    oracle: list[np.ndarray | None] = []
    for i, (t, (boxes, scores), answer) in enumerate(zip(truth, detections, final)):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if t is None:
            stages.append("answered" if answer is not None else "quiet")
            oracle.append(None)
            continue
        if not len(boxes):
            stages.append("no candidate")
            oracle.append(None)
            continue
        ious = _ious(boxes, t)
        j, top = int(np.argmax(ious)), int(np.argmax(scores))
        best[i] = ious[j]
        oracle.append(boxes[j] if ious[j] > 0 else None)
        if answer is not None and _ious(np.asarray(answer), t)[0] >= iou_threshold:
            stages.append("success")
        elif ious[j] < iou_threshold:
            stages.append("localisation miss")
        elif ious[top] < iou_threshold:
            stages.append("matching error")
        elif scores[top] < score_threshold:
            stages.append("threshold rejection")
        else:
            stages.append("temporal removal")
    return stages, best, oracle


def points_lost(
    sequence_ids: Sequence[str],
    frame_indices: Sequence[int],
    truth: Sequence[Box | None],
    detections: Sequence[Detection],
    final: Sequence[Box | None],
    score_threshold: float,
    iou_threshold: float,
    answer: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-frame table (:data:`COLUMNS`) and its summary: frames and share per stage (of the
    frames with / without the target), the stages in pipeline order (``order``), the ST-IoU
    achieved by ``final`` and by the candidate oracle, and ``answer`` (what ``final`` is: ``per
    frame``, ``smoothed`` or ``tracked``)."""
    stages, best, oracle = frame_stages(truth, detections, final, score_threshold, iou_threshold)
    table = pd.DataFrame({"sequence_id": [str(s) for s in sequence_ids],
                          "frame_index": np.asarray(frame_indices, dtype=np.int64),
                          "present": [t is not None for t in truth], "stage": stages, "best_iou": best})
    present = int(table["present"].sum())
    absent = len(table) - present
    counts = table["stage"].value_counts()
    summary: dict[str, Any] = {
        "answer": answer, "frames_with_target": present, "frames_without_target": absent,
        "present": {s: {"frames": int(counts.get(s, 0)), "share": _share(counts.get(s, 0), present)}
                    for s in PRESENT_STAGES},
        "absent": {s: {"frames": int(counts.get(s, 0)), "share": _share(counts.get(s, 0), absent)}
                   for s in ABSENT_STAGES},
        "order": {"present": list(PRESENT_STAGES), "absent": list(ABSENT_STAGES)},  # JSON objects lose it
    }
    for key, answers in (("st_iou", final), ("oracle_st_iou", oracle)):
        seq = sequence_table(sequence_ids, sequence_ids, frame_indices, truth, answers)
        summary[key] = summarize_sequences(seq)["st_iou"]
    return table.sort_values(["sequence_id", "frame_index"], kind="stable")[COLUMNS], summary


def _share(count: int, total: int) -> float | None:
    return None if total == 0 else round(float(count) / total, 6)
