"""A PNG of a model's best and worst frames: the truth, the top-1 box, and what each frame's outcome means.

Each panel is zoomed around the truth and the top-1 box together, so a box in the wrong place
is in the picture. Captions spell the outcome out (``wrong place: IoU 0.12 < 0.50``), with the
score against the score threshold; a legend names the box styles, and the row labels sit in the
left margin, clear of the captions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from pipeline.data.dataset import Sample, read_rgb  # noqa: E402
from pipeline.metrics.topone import Detection  # noqa: E402

_ERRORS = ("FP", "miss", "FN")
TRUTH = dict(edgecolor="lime", linestyle="-")
ANSWER = dict(edgecolor="red", linestyle="-")  # the top-1 box at or above the score threshold
BELOW = dict(edgecolor="orange", linestyle="--")  # the top-1 box below it: no answer
MARGIN = 1.5  # the zoom window is the truth and the top-1 box together, this many times larger
MIN_SIDE = 96  # px: the smallest zoom window


def pick_frames(frames: pd.DataFrame, n: int) -> tuple[list[int], list[int]]:
    """Row positions of the ``n`` best frames (true positives, highest IoU first) and the ``n``
    worst (errors, most confident first; misses have score 0). Ties keep frame order."""
    tp = frames[frames["outcome"] == "TP"].sort_values("iou", ascending=False, kind="stable")
    errors = frames[frames["outcome"].isin(_ERRORS)].sort_values("score", ascending=False, kind="stable")
    pos = {label: i for i, label in enumerate(frames.index)}
    return [pos[i] for i in tp.index[:n]], [pos[i] for i in errors.index[:n]]


def caption(row: pd.Series, score_threshold: float, iou_threshold: float) -> str:
    """What a frame's outcome means, in words, with its numbers against the thresholds."""
    score, iou = float(row["score"]), float(row["iou"])
    fired = f"score {score:.2f} ≥ {score_threshold:.2f}"
    quiet = f"score {score:.2f} < {score_threshold:.2f}"
    outcome = row["outcome"]
    if outcome == "TP":
        return f"hit: IoU {iou:.2f} ≥ {iou_threshold:.2f}\n{fired}"
    if outcome == "miss":
        return f"wrong place: IoU {0.0 if np.isnan(iou) else iou:.2f} < {iou_threshold:.2f}\n{fired}"
    if outcome == "FP":
        return f"false alarm, no target\n{fired}"
    if outcome == "FN":
        return f"no answer, target there\n{quiet}"
    return f"correctly quiet, no target\n{quiet}"


def draw_gallery(
    samples: Sequence[Sample], detections: Sequence[Detection], frames: pd.DataFrame, n: int, path: str | Path,
    score_threshold: float = 0.5, iou_threshold: float = 0.5,
) -> Path:
    """Write a 2-row grid (best, worst) of ``n`` frames each. ``frames`` is :attr:`Scores.frames`,
    its outcomes taken at ``score_threshold`` and ``iou_threshold`` (the captions show both)."""
    best, worst = pick_frames(frames, n)
    cols = max(len(best), len(worst), 1)
    fig, axes = plt.subplots(2, cols, figsize=(2.4 * cols + 0.6, 6.0), squeeze=False)
    for row, picks in enumerate((best, worst)):
        for col in range(cols):
            ax = axes[row][col]
            ax.set_axis_off()
            if col < len(picks):
                i = picks[col]
                _draw_frame(ax, samples[i], detections[i], frames.iloc[i], score_threshold)
                ax.set_title(f"{caption(frames.iloc[i], score_threshold, iou_threshold)}\nobject "
                             f"{samples[i].object_id}", fontsize=7)
    legend = [Line2D([], [], color=TRUTH["edgecolor"], linewidth=2, label="truth"),
              Line2D([], [], color=ANSWER["edgecolor"], linewidth=2, label=f"top-1 box, score ≥ {score_threshold:.2f} "
                     "(the answer)"),
              Line2D([], [], color=BELOW["edgecolor"], linewidth=2, linestyle="--",
                     label=f"top-1 box, score < {score_threshold:.2f} (no answer)")]
    fig.legend(handles=legend, loc="upper center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0.04, 0.0, 1.0, 0.94))
    for row, label in enumerate(("best frames (hits, highest IoU)", "worst frames (errors, most confident)")):
        box = axes[row][0].get_position()
        fig.text(0.012, (box.y0 + box.y1) / 2, label, rotation=90, va="center", ha="left", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})  # no version stamp: stable bytes
    plt.close(fig)
    return path


def zoom_window(boxes: Sequence[Sequence[float]], width: int, height: int) -> tuple[int, int, int, int]:
    """``x0, y0, x1, y1`` of a window around all ``boxes`` (MARGIN times their extent, at least
    MIN_SIDE px), clipped to the frame; the whole frame without boxes."""
    if not boxes:
        return 0, 0, width, height
    b = np.asarray(boxes, dtype=float).reshape(-1, 4)
    x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0, MIN_SIDE / MARGIN) * MARGIN / 2
    return (int(max(cx - half, 0)), int(max(cy - half, 0)), int(min(cx + half, width)), int(min(cy + half, height)))


def _draw_frame(ax, sample: Sample, detection: Detection, row: pd.Series, score_threshold: float) -> None:
    image = read_rgb(sample.image)
    boxes, scores = detection
    top = np.asarray(boxes).reshape(-1, 4)[int(np.argmax(scores))] if len(scores) else None
    shown = [b for b in (sample.box, top) if b is not None]
    x0, y0, x1, y1 = zoom_window(shown, image.shape[1], image.shape[0])
    ax.imshow(image[y0:y1, x0:x1])
    top_style = ANSWER if float(row["score"]) >= score_threshold else BELOW
    for box, style in ((sample.box, TRUTH), (top, top_style)):
        if box is not None:
            ax.add_patch(Rectangle((box[0] - x0, box[1] - y0), box[2] - box[0], box[3] - box[1],
                                   fill=False, linewidth=1.5, **style))
