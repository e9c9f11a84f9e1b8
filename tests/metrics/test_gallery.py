"""The gallery PNG from real image files: captions in words, the wrong box of a miss in the picture."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.data.frames import Sample
from pipeline.metrics.gallery import caption, draw_gallery, zoom_window
from pipeline.metrics.scoring import score_detections


@pytest.mark.parametrize("outcome, score, iou, text", [
    ("TP", 0.9, 0.85, "hit: IoU 0.85 ≥ 0.50\nscore 0.90 ≥ 0.34"),
    ("miss", 0.68, 0.12, "wrong place: IoU 0.12 < 0.50\nscore 0.68 ≥ 0.34"),
    ("miss", 0.68, np.nan, "wrong place: IoU 0.00 < 0.50\nscore 0.68 ≥ 0.34"),
    ("FP", 0.7, np.nan, "false alarm, no target\nscore 0.70 ≥ 0.34"),
    ("FN", 0.2, 0.6, "no answer, target there\nscore 0.20 < 0.34"),
])
def test_captions_say_what_the_outcome_means(outcome, score, iou, text):
    assert caption(pd.Series({"outcome": outcome, "score": score, "iou": iou}), 0.34, 0.5) == text


def test_zoom_window_holds_the_truth_and_the_wrong_box():
    x0, y0, x1, y1 = zoom_window([(100, 100, 140, 140), (400, 300, 440, 340)], 1024, 576)
    assert x0 <= 100 and y0 <= 100 and x1 >= 440 and y1 >= 340
    assert zoom_window([], 640, 480) == (0, 0, 640, 480)
    assert zoom_window([(0, 0, 10, 10)], 640, 480) == (0, 0, 53, 53)  # 96 px (MIN_SIDE) around it, clipped


def test_gallery_of_hits_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    samples, detections = [], []
    truths = [(40, 40, 90, 90), (200, 100, 250, 150), None, (60, 200, 110, 250)]
    tops = [(42, 42, 92, 92), (400, 50, 450, 100), (300, 200, 340, 240), (60, 200, 110, 250)]
    scores = [0.9, 0.8, 0.7, 0.1]  # hit, miss (far away), false alarm, below threshold
    for i, (truth, top, score) in enumerate(zip(truths, tops, scores)):
        path = tmp_path / f"f{i}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 255, (288, 512, 3), dtype=np.uint8))
        samples.append(Sample(str(path), f"obj{i}", f"obj{i}_s0", 0, truth, (), 512, 288))
        detections.append((np.array([top], dtype=float), np.array([score])))
    frames = score_detections(samples, detections, 0.5, 0.5).frames
    assert frames["outcome"].tolist() == ["TP", "miss", "FP", "FN"]
    out = draw_gallery(samples, detections, frames, 3, tmp_path / "g" / "gallery.png", 0.5, 0.5)
    again = draw_gallery(samples, detections, frames, 3, tmp_path / "g2.png", 0.5, 0.5)
    assert out.read_bytes().startswith(b"\x89PNG") and out.read_bytes() == again.read_bytes()
