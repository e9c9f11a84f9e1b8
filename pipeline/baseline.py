"""Stage ``baseline``: OpenCV template matching on the val split, scored like the learned model
(``python -m pipeline.baseline``).

Depends on the data only (``data/prepared``, ``data/templates``), never on a trained model, so
every report can put the learned detector next to its classical peer. Each frame is resized to
``baseline.search_size``, turned gray and searched with every object's template bank
(:mod:`pipeline.classical.template_matching`); the single best match is the frame's detection.
Writes ``reports/baseline/`` (:class:`pipeline.paths.ScoredOutputs`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from pipeline.classical.template_matching import (
    Template,
    match,
    prepare_templates,
    to_gray,
)
from pipeline.cli import UserError, run_stage
from pipeline.config import BaselineConfig, load_params
from pipeline.data.dataset import Sample, load_samples, read_frame, read_rgb
from pipeline.data.manifest import read_manifest, read_templates
from pipeline.metrics.outputs import score_and_write
from pipeline.metrics.topone import Detection
from pipeline.paths import Paths

log = logging.getLogger("baseline")


def load_val_samples(paths: Paths) -> list[Sample]:
    """The val frames joined with their objects' resized templates; missing inputs name the stage
    to run."""
    if not paths.manifest.is_file():
        raise UserError(f"{paths.manifest}: not found; run the prepare stage first (dvc repro prepare)")
    if not paths.templates_manifest.is_file():
        raise UserError(f"{paths.templates_manifest}: not found; run resize_templates first")
    try:
        manifest = read_manifest(paths.manifest)
    except ValueError as exc:  # wrong columns, empty or malformed CSV
        raise UserError(str(exc)) from None
    templates = read_templates(paths.templates_manifest)
    samples = load_samples(manifest, templates, "val")
    if not samples:
        raise UserError(f"{paths.manifest}: the val split is empty")
    return samples


def detect(samples: Sequence[Sample], cfg: BaselineConfig) -> tuple[list[Detection], float]:
    """One detection per sample (``boxes [N, 4]`` xyxy original pixels, ``scores [N]``; N = 1, or
    0 when no template fits the frame) and the mean milliseconds of matching per frame (frame
    decoding and template preparation excluded)."""
    banks: dict[str, list[Template]] = {}  # object_id -> bank: built once per object
    detections: list[Detection] = []
    seconds = 0.0
    for sample in samples:
        if sample.object_id not in banks:
            photos = [read_rgb(path) for path in sample.templates]
            banks[sample.object_id] = prepare_templates(photos, cfg.template_crop, cfg.scales, cfg.rotations)
        image, sx, sy = read_frame(sample, cfg.search_size)
        gray = to_gray(image)
        start = time.perf_counter()
        best = match(gray, banks[sample.object_id])
        seconds += time.perf_counter() - start
        if best is None:
            detections.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
            continue
        x1, y1, x2, y2 = best.box
        box = np.array([[x1 / sx, y1 / sy, x2 / sx, y2 / sy]], np.float32)
        detections.append((box, np.array([best.score], np.float32)))
    return detections, 1000.0 * seconds / len(samples)


def main() -> None:
    paths = Paths()
    params = load_params(paths.params)
    samples = load_val_samples(paths)
    detections, ms = detect(samples, params.baseline)
    scores = score_and_write(
        paths.baseline,
        samples,
        detections,
        score_threshold=params.baseline.score_threshold,
        iou_threshold=params.evaluate.iou_threshold,
        ms_per_frame=ms,
        gallery_frames=params.evaluate.gallery_frames,
    )
    s = scores.summary
    log.info("%d val frames: AP50 %s, success %s, f1 %s, %.1f ms/frame -> %s",
             len(samples), s.get("AP50"), s.get("success"), s.get("f1"), ms, paths.baseline.folder)


if __name__ == "__main__":
    run_stage(main, __doc__)
