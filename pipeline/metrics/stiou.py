"""Spatio-temporal IoU (ST-IoU) of one answer per frame over a video, the drone benchmark's score.

For one video (sequence)::

    ST-IoU = sum over frames where truth and prediction both exist of IoU(truth, prediction)
             / number of frames where either exists

so every false-positive frame and every missed frame costs as much as a box with IoU 0. A video
where the target never appears and nothing is predicted scores 1 (nothing to find, nothing
said). A data set's ST-IoU is the mean over its videos. Frames not decoded (``data.frame_stride``)
are not counted.

Also here: scoring of submission documents (``[{"video_id", "detections": [{"bboxes": [{"frame",
"x1", "y1", "x2", "y2"}]}]}]``, the format ``predict --video`` writes) against ``annotations.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.metrics.topone import paired_iou

Box = Sequence[float]
Detection = tuple[np.ndarray, np.ndarray]  # boxes [N, 4] xyxy, scores [N]

#: Columns of ``sequences.csv``.
SEQUENCE_COLUMNS = ["sequence_id", "object_id", "frames", "frames_with_target", "frames_predicted", "st_iou",
                    "frames_predicted_temporal", "st_iou_temporal", "frames_predicted_tracked", "st_iou_tracked"]




def frame_terms(truth: Sequence[Box | None], pred: Sequence[Box | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame (same order in both): ``has_truth [N]`` bool, ``has_pred [N]`` bool and ``iou [N]``,
    the IoU of the two boxes where both exist and 0 elsewhere (also for degenerate boxes)."""
    if len(truth) != len(pred):
        raise ValueError(f"{len(truth)} frames of truth but {len(pred)} of predictions")
    has_t = np.fromiter((t is not None for t in truth), dtype=bool, count=len(truth))
    has_p = np.fromiter((p is not None for p in pred), dtype=bool, count=len(pred))
    iou = np.zeros(len(truth))
    both = np.flatnonzero(has_t & has_p)
    if len(both):
        t = np.array([truth[i] for i in both], dtype=np.float64).reshape(-1, 4)
        p = np.array([pred[i] for i in both], dtype=np.float64).reshape(-1, 4)
        iou[both] = np.nan_to_num(paired_iou(p, t), nan=0.0)
    return has_t, has_p, iou


def st_iou(truth: Sequence[Box | None], pred: Sequence[Box | None]) -> float:
    """ST-IoU of one video: per frame (same order in both) the true and the predicted box
    ``(x1, y1, x2, y2)`` or None; see the module docstring."""
    has_t, has_p, iou = frame_terms(truth, pred)
    union = int((has_t | has_p).sum())
    return 1.0 if union == 0 else float(iou.sum()) / union


def top1(detections: Sequence[Detection]) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Per frame the highest-scoring box ``[4]`` (None without detections) and its score (0 then)."""
    boxes: list[np.ndarray | None] = []
    scores = np.zeros(len(detections))
    for i, (b, s) in enumerate(detections):
        s = np.asarray(s, dtype=float).reshape(-1)
        if s.size:
            j = int(np.argmax(s))
            boxes.append(np.asarray(b, dtype=float).reshape(-1, 4)[j])
            scores[i] = s[j]
        else:
            boxes.append(None)
    return boxes, scores


def thresholded(boxes: Sequence[np.ndarray | None], scores: np.ndarray, score_threshold: float) -> list[np.ndarray | None]:
    """The per-frame answer without temporal processing: the top-1 box where it scores at least
    ``score_threshold``, else None."""
    return [b if b is not None and s >= score_threshold else None for b, s in zip(boxes, scores)]


def sequence_order(sequence_ids: Sequence[str], frame_indices: Sequence[int]) -> dict[str, list[int]]:
    """``sequence_id -> positions`` of its frames, by frame index (sequences in first-seen order)."""
    out: dict[str, list[int]] = {}
    for i, seq in enumerate(sequence_ids):
        out.setdefault(str(seq), []).append(i)
    return {seq: sorted(pos, key=lambda i: (frame_indices[i], i)) for seq, pos in out.items()}


def sequence_table(
    sequence_ids: Sequence[str],
    object_ids: Sequence[str],
    frame_indices: Sequence[int],
    truth: Sequence[Box | None],
    pred: Sequence[Box | None],
    pred_temporal: Sequence[Box | None] | None = None,
    pred_tracked: Sequence[Box | None] | None = None,
) -> pd.DataFrame:
    """One row per sequence (:data:`SEQUENCE_COLUMNS`, sorted by sequence id): frame counts and
    the ST-IoU of ``pred`` and, when given, of ``pred_temporal`` (smoothed) and ``pred_tracked``
    (tracked over candidates); columns of one not given are empty.
    All per-frame inputs are in the same (any) order; ``object_id`` is that of a sequence's
    first frame by frame index.

    One pass over all frames (IoU element-wise, sums by group), not one :func:`st_iou` call per
    sequence: the same numbers, about 10x quicker for thousands of short sequences.
    """
    has_t, has_p, iou = frame_terms(truth, pred)
    frames = pd.DataFrame({
        "sequence_id": [str(s) for s in sequence_ids], "object_id": [str(o) for o in object_ids],
        "frame_index": np.asarray(frame_indices, dtype=np.int64),
        "truth": has_t, "pred": has_p, "iou": iou, "union": has_t | has_p,
    })
    columns = {"frames": ("truth", "size"), "frames_with_target": ("truth", "sum"),
               "frames_predicted": ("pred", "sum"), "iou": ("iou", "sum"), "union": ("union", "sum")}
    others = {"temporal": pred_temporal, "tracked": pred_tracked}
    for name, answers in others.items():
        if answers is not None:
            _, has_q, iou_q = frame_terms(truth, answers)
            frames[f"pred_{name}"], frames[f"iou_{name}"], frames[f"union_{name}"] = has_q, iou_q, has_t | has_q
            columns.update({f"frames_predicted_{name}": (f"pred_{name}", "sum"), f"iou_{name}": (f"iou_{name}", "sum"),
                            f"union_{name}": (f"union_{name}", "sum")})
    frames = frames.sort_values(["sequence_id", "frame_index"], kind="stable")
    table = frames.groupby("sequence_id", sort=True).agg(object_id=("object_id", "first"), **columns).reset_index()
    table["st_iou"] = _ratio_or_one(table["iou"], table["union"])
    for name, answers in others.items():
        if answers is None:
            table[f"frames_predicted_{name}"] = None
            table[f"st_iou_{name}"] = None
        else:
            table[f"st_iou_{name}"] = _ratio_or_one(table[f"iou_{name}"], table[f"union_{name}"])
            table[f"frames_predicted_{name}"] = table[f"frames_predicted_{name}"].astype(int)
    for key in ("frames", "frames_with_target", "frames_predicted"):
        table[key] = table[key].astype(int)
    return table[SEQUENCE_COLUMNS]


def _ratio_or_one(iou_sum: pd.Series, union: pd.Series) -> np.ndarray:
    """Per sequence ``iou_sum / union``, 1 where the union is empty (see the module docstring)."""
    u = union.to_numpy(dtype=float)
    return np.where(u > 0, iou_sum.to_numpy(dtype=float) / np.maximum(u, 1.0), 1.0)


def summarize_sequences(table: pd.DataFrame) -> dict[str, float | int | None]:
    """``sequences``, ``st_iou``, ``st_iou_temporal`` and ``st_iou_tracked``: the means over the
    sequences of a :func:`sequence_table` (None when undefined)."""
    out: dict[str, float | int | None] = {"sequences": int(len(table))}
    for key in ("st_iou", "st_iou_temporal", "st_iou_tracked"):
        values = pd.to_numeric(table[key], errors="coerce").dropna()
        out[key] = float(values.mean()) if len(values) else None
    return out


# ----------------------------------------------------------------------------------------------
# Submission documents
# ----------------------------------------------------------------------------------------------


class BadDocument(ValueError):
    """An annotations or submission document does not follow the format; the message says where."""


def frame_boxes(entry: Mapping[str, Any], key: str, where: str) -> dict[int, tuple[float, ...]]:
    """``frame -> (x1, y1, x2, y2)`` of one video entry; ``key`` is ``annotations`` (truth) or
    ``detections`` (submission). A frame listed twice or a missing key is :class:`BadDocument`."""
    groups = entry.get(key)
    if not isinstance(groups, list):
        raise BadDocument(f"{where}: missing key {key!r} (a list)")
    out: dict[int, tuple[float, ...]] = {}
    for g, group in enumerate(groups):
        bboxes = group.get("bboxes") if isinstance(group, dict) else None
        if not isinstance(bboxes, list):
            raise BadDocument(f"{where}: {key}[{g}]: missing key 'bboxes' (a list)")
        for j, b in enumerate(bboxes):
            try:
                frame = b["frame"]
                box = tuple(float(b[k]) for k in ("x1", "y1", "x2", "y2"))
            except (KeyError, TypeError, ValueError) as exc:
                raise BadDocument(f"{where}: {key}[{g}].bboxes[{j}]: missing or bad key {exc}") from None
            if isinstance(frame, bool) or not isinstance(frame, int):
                raise BadDocument(f"{where}: {key}[{g}].bboxes[{j}]: frame {frame!r} is not an integer")
            if frame in out:
                raise BadDocument(f"{where}: frame {frame} has two boxes")
            out[frame] = box
    return out


def score_submission(truth: Sequence[Mapping[str, Any]], submission: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """ST-IoU per video of ``truth`` (``annotations.json``) for ``submission``, over every frame
    either lists; a video missing from the submission scores as one with no detections."""
    def by_video(doc: Sequence[Mapping[str, Any]], key: str, name: str) -> dict[str, dict[int, tuple[float, ...]]]:
        if not isinstance(doc, list):
            raise BadDocument(f"{name}: expected a list of videos")
        out = {}
        for i, entry in enumerate(doc):
            vid = entry.get("video_id") if isinstance(entry, dict) else None
            if not isinstance(vid, str):
                raise BadDocument(f"{name}: entry {i}: missing key 'video_id'")
            if vid in out:
                raise BadDocument(f"{name}: video {vid} listed twice")
            out[vid] = frame_boxes(entry, key, f"{name}: video {vid}")
        return out

    gt, pred = by_video(truth, "annotations", "annotations"), by_video(submission, "detections", "submission")
    scores = {}
    for vid, boxes in gt.items():
        found = pred.get(vid, {})
        frames = sorted(set(boxes) | set(found))
        scores[vid] = st_iou([boxes.get(f) for f in frames], [found.get(f) for f in frames])
    return scores
