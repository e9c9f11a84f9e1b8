"""Search a whole video, frame by frame, for the object of a :class:`Detector`'s templates.

Frames are decoded by OpenCV and sent to the model ``batch_size`` at a time (the templates were
encoded once by :meth:`Detector.set_templates`); the top-1 detection of each frame goes through
the :class:`~pipeline.inference.temporal.TemporalFilter` (or, without it, counts where it scores
at least ``score_threshold``). Nothing but the answers is kept in memory.

The answers become one entry of a submission document, the drone benchmark's format::

    {"video_id": "...", "detections": [{"bboxes": [{"frame": 370, "x1": 422, "y1": 310, "x2": 470,
                                                     "y2": 355}, ...]}]}        # [] when none

one ``bboxes`` list per run of consecutive frames with an answer, boxes in whole pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.cli import UserError
from pipeline.config import TemporalConfig
from pipeline.data.formats.video import BadVideo, VideoFrames
from pipeline.inference.detector import Detector
from pipeline.inference.temporal import TemporalFilter


@dataclass(frozen=True)
class VideoAnswers:
    """One video's answers: ``boxes[n]`` is frame ``n``'s box ``[4]`` xyxy px or None (absent);
    ``seconds`` is the wall time of decoding, the model and the filter (templates excluded)."""

    video_id: str
    boxes: list[np.ndarray | None]
    seconds: float

    @property
    def frames(self) -> int:
        return len(self.boxes)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    @property
    def frames_with_answer(self) -> int:
        return sum(b is not None for b in self.boxes)


def search_video(
    detector: Detector,
    path: Path,
    video_id: str,
    temporal: TemporalConfig | None,
    score_threshold: float = 0.3,
    batch_size: int = 8,
    on_frames: Callable[[int], None] | None = None,
) -> VideoAnswers:
    """Answers for every frame of the video at ``path`` (see the module docstring). ``temporal``
    None (or not enabled) answers the raw top-1 box where it reaches ``score_threshold``. An
    unreadable video is a :class:`UserError` naming it. ``on_frames(n)`` is called after each
    batch of ``n`` frames (a progress bar)."""
    use_filter = temporal is not None and temporal.enabled
    filt = TemporalFilter(temporal) if use_filter else None  # type: ignore[arg-type]
    boxes: list[np.ndarray | None] = []

    def consume(batch: list[np.ndarray]) -> None:
        for found in detector.predict(batch, batch_size=batch_size):
            top = found.boxes[0] if len(found.scores) else None
            score = float(found.scores[0]) if len(found.scores) else 0.0
            if filt is not None:
                boxes.extend(a.box for a in filt.push(top, score))
            else:
                boxes.append(top if top is not None and score >= score_threshold else None)
        if on_frames is not None:
            on_frames(len(batch))

    start = time.perf_counter()
    batch: list[np.ndarray] = []
    try:
        for _, bgr in VideoFrames(path):
            batch.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if len(batch) == batch_size:
                consume(batch)
                batch = []
    except BadVideo as exc:
        raise UserError(f"{path}: {exc}") from None
    if batch:
        consume(batch)
    if filt is not None:
        boxes.extend(a.box for a in filt.flush())
    return VideoAnswers(video_id, boxes, time.perf_counter() - start)


def submission_entry(answers: VideoAnswers) -> dict[str, Any]:
    """The video's entry of a submission document: one ``bboxes`` run per stretch of consecutive
    frames with an answer; ``"detections": []`` when there is none."""
    runs: list[list[dict[str, int]]] = []
    previous = None
    for n, box in enumerate(answers.boxes):
        if box is None:
            continue
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        if previous != n - 1:
            runs.append([])
        runs[-1].append({"frame": n, "x1": x1, "y1": y1, "x2": x2, "y2": y2})
        previous = n
    return {"video_id": answers.video_id, "detections": [{"bboxes": run} for run in runs]}


def submission(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The document: every video's entry, by video id (a video listed twice is a bug)."""
    ids = [e["video_id"] for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"video ids listed twice: {sorted({i for i in ids if ids.count(i) > 1})}")
    return sorted(entries, key=lambda e: e["video_id"])
