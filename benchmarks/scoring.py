"""Evaluation cost: :func:`pipeline.metrics.scoring.score_detections` on many synthetic frames.

Frames look like the evaluate stage's: 1024x576, 50 objects, four in five with an 18-72 px box;
every frame gets ``detections`` scored boxes (the evaluate default ``max_detections``), the best
one near the truth on most frames, so pycocotools matches as it would on real output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.common import Table, fmt, measure
from pipeline.data.dataset import Sample
from pipeline.metrics.coco import SIZE_BINS, coco_ap
from pipeline.metrics.scoring import score_detections
from pipeline.metrics.stiou import sequence_table, thresholded, top1
from pipeline.metrics.topone import Detection, summarize, top1_table

#: The issue's target for 10,000 frames, in seconds.
TARGET_S = 5.0
TARGET_FRAMES = 10_000


@dataclass(frozen=True)
class ScoringSettings:
    frames: int = TARGET_FRAMES
    detections: int = 10
    warmup: int = 1
    repeats: int = 5


def synthetic_frames(frames: int, detections: int, seed: int = 0) -> tuple[list[Sample], list[Detection]]:
    """``frames`` samples and per-frame ``(boxes [N, 4], scores [N])`` sorted by score."""
    rng = np.random.default_rng(seed)
    w, h = 1024, 576
    samples, dets = [], []
    for i in range(frames):
        obj = i % 50
        side = rng.uniform(18, 72, 2)
        x1, y1 = rng.uniform(0, w - side[0]), rng.uniform(0, h - side[1])
        box = (x1, y1, x1 + side[0], y1 + side[1]) if rng.random() < 0.8 else None
        samples.append(Sample(image=f"val/{obj}/{i}.jpg", object_id=str(obj), sequence_id=f"{obj}_{i // 100}",
                              frame_index=i % 100, box=box, templates=(), width=w, height=h))
        sides = rng.uniform(18, 72, (detections, 2))
        xy = rng.uniform(0, 1, (detections, 2)) * ([w, h] - sides)
        boxes = np.concatenate([xy, xy + sides], axis=1)
        if box is not None and rng.random() < 0.7:  # a near hit for most frames with a target
            boxes[0] = np.asarray(box) + rng.normal(0, 3, 4)
        scores = np.sort(rng.uniform(0, 1, detections))[::-1].copy()
        dets.append((boxes.astype(np.float32), scores.astype(np.float32)))
    return samples, dets


def scoring_section(settings: ScoringSettings) -> Table:
    """Seconds for the whole scoring of ``frames`` frames and for its two parts, against the target."""
    samples, dets = synthetic_frames(settings.frames, settings.detections)
    gt = [s.box for s in samples]
    sizes = [(s.width, s.height) for s in samples]
    sequences, objects, indices = ([getattr(s, k) for s in samples] for k in ("sequence_id", "object_id", "frame_index"))
    answers = thresholded(*top1(dets), 0.3)
    parts = [
        ("score_detections (everything the evaluate stage computes)",
         lambda: score_detections(samples, dets, 0.3, 0.5)),
        ("  of which COCO AP (faster-coco-eval, with size bins)", lambda: coco_ap(gt, dets, sizes, SIZE_BINS)),
        ("  same AP with pycocotools (the reference; not used)",
         lambda: coco_ap(gt, dets, sizes, SIZE_BINS, backend="pycocotools")),
        ("  of which top-1 table + summary", lambda: summarize(top1_table(gt, dets), 0.3, 0.5)),
        ("  of which ST-IoU per sequence", lambda: sequence_table(sequences, objects, indices, gt, answers)),
    ]
    table = Table("Evaluation metrics", ["what", "frames", "seconds", "frames/s", f"target < {TARGET_S:g} s"])
    full = settings.frames >= TARGET_FRAMES  # the target is for 10,000 frames; parts are not linear in frames
    medians = {}
    for name, fn in parts:
        t = measure(fn, settings.warmup, settings.repeats)
        medians[name] = t.median
        verdict = ("met" if t.median < TARGET_S else "missed") if full else f"n/a (< {TARGET_FRAMES:,} frames)"
        table.add([name, f"{settings.frames:,}", fmt(t.median), fmt(settings.frames / t.median),
                   verdict if not name.startswith(" ") else ""],
                  what=name.strip(), frames=settings.frames, seconds=t.median, times=list(t.times))
    fast, ref = (medians[name] for name, _ in parts[1:3])
    table.notes.append(f"faster-coco-eval takes {fast / ref:.2f}x the time of pycocotools for the same AP "
                       "(identical values; tests/metrics/test_scoring.py checks that)")
    table.notes.append(
        f"{settings.frames:,} synthetic frames (1024x576, 50 objects, 80% with a target), {settings.detections} "
        f"detections each; median of {settings.repeats} runs after {settings.warmup} warm-up; thresholds 0.3 / 0.5")
    return table
