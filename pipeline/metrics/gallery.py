"""A PNG of a model's best and worst frames, with true (green) and predicted (red) boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from pipeline.data.dataset import Sample, read_rgb  # noqa: E402
from pipeline.metrics.topone import Detection  # noqa: E402

_ERRORS = ("FP", "miss", "FN")


def pick_frames(frames: pd.DataFrame, n: int) -> tuple[list[int], list[int]]:
    """Row positions of the ``n`` best frames (true positives, highest IoU first) and the ``n``
    worst (errors, most confident first; misses have score 0). Ties keep frame order."""
    tp = frames[frames["outcome"] == "TP"].sort_values("iou", ascending=False, kind="stable")
    errors = frames[frames["outcome"].isin(_ERRORS)].sort_values("score", ascending=False, kind="stable")
    pos = {label: i for i, label in enumerate(frames.index)}
    return [pos[i] for i in tp.index[:n]], [pos[i] for i in errors.index[:n]]


def draw_gallery(
    samples: Sequence[Sample], detections: Sequence[Detection], frames: pd.DataFrame, n: int, path: str | Path
) -> Path:
    """Write a 2-row grid (best, worst) of ``n`` frames each, zoomed around the truth or the
    prediction so small objects stay visible. ``frames`` is :attr:`Scores.frames`."""
    best, worst = pick_frames(frames, n)
    cols = max(len(best), len(worst), 1)
    fig, axes = plt.subplots(2, cols, figsize=(2.4 * cols, 5.2), squeeze=False)
    for row, (title, picks) in enumerate((("best", best), ("worst", worst))):
        for col in range(cols):
            ax = axes[row][col]
            ax.set_axis_off()
            if col >= len(picks):
                continue
            i = picks[col]
            _draw_frame(ax, samples[i], detections[i], frames.iloc[i])
        axes[row][0].set_title(f"{title} frames", loc="left", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})  # no version stamp: stable bytes
    plt.close(fig)
    return path


def _draw_frame(ax, sample: Sample, detection: Detection, row: pd.Series) -> None:
    image = read_rgb(sample.image)
    boxes, scores = detection
    top = np.asarray(boxes).reshape(-1, 4)[int(np.argmax(scores))] if len(scores) else None
    focus = sample.box if sample.box is not None else top
    if focus is not None:  # a 4x window around the object, clipped to the frame
        cx, cy = (focus[0] + focus[2]) / 2, (focus[1] + focus[3]) / 2
        half = max(focus[2] - focus[0], focus[3] - focus[1], 32) * 2
        h, w = image.shape[:2]
        x0, y0 = int(max(cx - half, 0)), int(max(cy - half, 0))
        x1, y1 = int(min(cx + half, w)), int(min(cy + half, h))
        image = image[y0:y1, x0:x1]
    else:
        x0 = y0 = 0
    ax.imshow(image)
    for box, colour in ((sample.box, "lime"), (top, "red")):
        if box is not None:
            ax.add_patch(Rectangle((box[0] - x0, box[1] - y0), box[2] - box[0], box[3] - box[1],
                                   fill=False, edgecolor=colour, linewidth=1.5))
    iou = "" if np.isnan(row["iou"]) else f" IoU {row['iou']:.2f}"
    ax.set_title(f"{row['outcome']} {row['score']:.2f}{iou}\n{sample.object_id}", fontsize=7)
