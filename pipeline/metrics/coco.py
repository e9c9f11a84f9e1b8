"""COCO-style AP for single-target frames, computed by faster-coco-eval (or pycocotools).

Every frame is one COCO image with at most one ground-truth box (its target) of one category;
detections are that frame's scored boxes. AP is averaged over IoU 0.50:0.95, AP50 at 0.5.

``backend="faster"`` (default) runs faster-coco-eval's C++ COCOeval, a drop-in reimplementation of
pycocotools' matching and accumulation; ``backend="pycocotools"`` runs the original. Both give the
same numbers (tested on random detections with size bins); faster-coco-eval is about 5x quicker on
10,000 frames (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any, Literal, Sequence

import numpy as np

Backend = Literal["faster", "pycocotools"]

#: Object-size bins (long side... COCO uses area; these are areas of squares with these sides).
SIZE_BINS = {"tiny": (0, 16), "small": (16, 32), "medium": (32, 64), "large": (64, 1e5)}


def coco_ap(
    gt_boxes: Sequence[Sequence[float] | None],
    detections: Sequence[tuple[np.ndarray, np.ndarray]],
    image_sizes: Sequence[tuple[int, int]] | None = None,
    size_bins: dict[str, tuple[float, float]] | None = None,
    backend: Backend = "faster",
) -> dict[str, float]:
    """AP, AP50, AP75 (and AP per size bin) of per-frame detections against per-frame truths.

    gt_boxes: one ``(x1, y1, x2, y2)`` per frame, or None when the target is absent.
    detections: per frame ``(boxes [N,4] xyxy, scores [N])``.
    size_bins: name -> (min side, max side) in px; a box's size is sqrt(area). Returns -1 where a
    value is undefined (no ground truth at all, or none in that bin), as pycocotools does.
    backend: ``"faster"`` (faster-coco-eval) or ``"pycocotools"``; same results.
    """
    if len(gt_boxes) != len(detections):
        raise ValueError(f"{len(gt_boxes)} frames of truth but {len(detections)} of detections")
    sizes = image_sizes or [(10_000, 10_000)] * len(gt_boxes)
    images = [{"id": i, "width": int(w), "height": int(h)} for i, (w, h) in enumerate(sizes)]
    anns = []
    for i, box in enumerate(gt_boxes):
        if box is None:
            continue
        x1, y1, x2, y2 = map(float, box)
        anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    results = _results(detections)
    if not anns:
        return {"AP": -1.0, "AP50": -1.0, "AP75": -1.0}
    if not results:
        return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    coco_cls, eval_cls = _backend(backend)
    categories = [{"id": 1, "name": "target"}]
    gt, dt = coco_cls(), coco_cls()
    gt.dataset = {"images": images, "annotations": anns, "categories": categories}
    # The results as loadRes would make them (id, area = w * h, iscrowd 0), without its per-box
    # Python pass that adds an unused polygon to every box (0.6 of 2.6 s for 10,000 frames, profiled).
    dt.dataset = {"images": images, "annotations": results, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
        gt.createIndex()
        dt.createIndex()
        ev = eval_cls(gt, dt, iouType="bbox")
        ev.params.maxDets = [1, 10, 100]
        bins = size_bins or {}
        ev.params.areaRng = [[0, 1e10]] + [[lo**2, hi**2] for lo, hi in bins.values()]
        ev.params.areaRngLbl = ["all", *bins]
        ev.evaluate()
        ev.accumulate()
    out = {"AP": _ap(ev, None, 0), "AP50": _ap(ev, 0.5, 0), "AP75": _ap(ev, 0.75, 0)}
    for a, name in enumerate(bins, start=1):
        out[f"AP_{name}"] = _ap(ev, None, a)
    return out


def _results(detections: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """COCO result annotations of per-frame ``(boxes [N, 4] xyxy, scores [N])``; frame i is image i."""
    boxes = [np.asarray(b, dtype=float).reshape(-1, 4) for b, _ in detections]
    scores = [np.asarray(s, dtype=float).reshape(-1) for _, s in detections]
    if not boxes or not sum(len(b) for b in boxes):
        return []
    image = np.repeat(np.arange(len(boxes)), [len(b) for b in boxes]).tolist()
    xyxy = np.concatenate(boxes)
    x, y = xyxy[:, 0].tolist(), xyxy[:, 1].tolist()
    w, h = (xyxy[:, 2] - xyxy[:, 0]).tolist(), (xyxy[:, 3] - xyxy[:, 1]).tolist()
    score = np.concatenate(scores).tolist()
    return [
        {"id": k + 1, "image_id": i, "category_id": 1, "bbox": [x0, y0, bw, bh], "area": bw * bh, "score": sc,
         "iscrowd": 0}
        for k, (i, x0, y0, bw, bh, sc) in enumerate(zip(image, x, y, w, h, score))
    ]


def _backend(name: str) -> tuple[Any, Any]:
    """(COCO, COCOeval) classes of the named backend."""
    if name == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # INFO lines on every call

        return COCO, COCOeval_faster
    if name == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    raise ValueError(f"COCO backend must be 'faster' or 'pycocotools', got {name!r}")


def _ap(ev: Any, iou: float | None, area_index: int) -> float:
    """Mean precision at maxDets=100 over recall and (one or all) IoU thresholds; -1 if undefined."""
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    if iou is not None:
        t = int(np.argmin(np.abs(ev.params.iouThrs - iou)))
        precision = precision[t : t + 1]
    p = precision[:, :, 0, area_index, -1]
    p = p[p > -1]
    return float(p.mean()) if p.size else -1.0
