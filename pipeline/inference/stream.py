"""Search a whole video, frame by frame, for the object of a :class:`Detector`'s templates.

Frames are decoded by OpenCV and sent to the model ``batch_size`` at a time (the templates were
encoded once by :meth:`Detector.set_templates`). With ``temporal.method: smooth`` the top-1
detection of each frame goes through the :class:`~pipeline.inference.temporal.TemporalFilter`;
with ``track`` each frame's top-k candidates go to the
:class:`~pipeline.inference.tracker.PathSearch` (offline: answered once the video ends; online:
frame by frame); without ``temporal`` the top-1 box counts where it scores at least
``score_threshold``. Nothing but the answers (and, to track, the candidates) is kept in memory.

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
from pipeline.inference.tracker import Candidates, PathSearch


@dataclass(frozen=True)
class VideoAnswers:
    """One video's answers: ``boxes[n]`` is frame ``n``'s box ``[4]`` xyxy px or None (absent);
    ``seconds`` is the wall time of decoding, the model and the filter (templates excluded), of
    which ``temporal_seconds`` in the temporal step (smoothing or tracking)."""

    video_id: str
    boxes: list[np.ndarray | None]
    seconds: float
    temporal_seconds: float = 0.0

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
    detect_every: int = 1,
    on_frames: Callable[[int], None] | None = None,
) -> VideoAnswers:
    """Answers for every frame of the video at ``path`` (see the module docstring). ``temporal``
    None (or not enabled) answers the raw top-1 box where it reaches ``score_threshold``; the
    tracker takes ``score_threshold`` as the presence threshold. ``detect_every`` = k > 1 runs
    the model on every k-th frame only (the others are grabbed, not decoded) and answers the
    frames between by :func:`fill_between`. ``on_frames(n)`` is called after each batch, ``n``
    the frames it covers (a progress bar). An unreadable video is a :class:`UserError` naming it."""
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    use_time = temporal is not None and temporal.enabled
    tracking = use_time and temporal.method == "track"  # type: ignore[union-attr]
    filt = TemporalFilter(temporal) if use_time and not tracking else None  # type: ignore[arg-type]
    paths = PathSearch(temporal.track, score_threshold) if tracking else None  # type: ignore[union-attr]
    online = paths is not None and temporal.track.mode == "online"  # type: ignore[union-attr]
    boxes: list[np.ndarray | None] = []
    spent = 0.0

    def consume(batch: list[np.ndarray]) -> None:
        nonlocal spent
        for found in detector.predict(batch, batch_size=batch_size):
            top = found.boxes[0] if len(found.scores) else None
            score = float(found.scores[0]) if len(found.scores) else 0.0
            start = time.perf_counter()
            if paths is not None:
                choice = paths.push(Candidates(found.boxes, found.scores, found.embeddings))
                if online:
                    boxes.append(paths.box(len(boxes), choice))
            elif filt is not None:
                boxes.extend(a.box for a in filt.push(top, score))
            else:
                boxes.append(top if top is not None and score >= score_threshold else None)
            spent += time.perf_counter() - start
        if on_frames is not None:
            on_frames(len(batch) * detect_every)

    start = time.perf_counter()
    batch: list[np.ndarray] = []
    try:
        video = VideoFrames(path, stride=detect_every)
        for _, bgr in video:
            batch.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if len(batch) == batch_size:
                consume(batch)
                batch = []
    except BadVideo as exc:
        raise UserError(f"{path}: {exc}") from None
    if batch:
        consume(batch)
    last = time.perf_counter()
    if filt is not None:
        boxes.extend(a.box for a in filt.flush())
    if paths is not None and not online:
        boxes = paths.offline_answers()
    if detect_every > 1:
        boxes = fill_between(boxes, detect_every, video.count)
    end = time.perf_counter()
    return VideoAnswers(video_id, boxes, end - start, spent + end - last)


def fill_between(answers: Sequence[np.ndarray | None], every: int, frames: int) -> list[np.ndarray | None]:
    """All ``frames`` answers from those of frames ``0, every, 2 * every, ...``: a frame between
    two answered ones gets the box interpolated between them, one between an answered frame and
    the end of the video the earlier box, any other None."""
    out: list[np.ndarray | None] = []
    for n in range(frames):
        a, offset = divmod(n, every)
        left = answers[a] if a < len(answers) else None
        if offset == 0 or left is None:
            out.append(None if left is None else np.asarray(left, dtype=np.float64))
            continue
        if a + 1 >= len(answers):
            out.append(np.asarray(left, dtype=np.float64))
            continue
        right = answers[a + 1]
        w = offset / every
        out.append(None if right is None else (1 - w) * np.asarray(left, np.float64) + w * np.asarray(right, np.float64))
    return out


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
