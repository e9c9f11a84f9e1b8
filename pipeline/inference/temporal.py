"""Temporal post-processing of one video's per-frame top-1 detections (``temporal`` params).

A detector judges each frame alone; in a video, one-frame flickers are nearly always wrong and a
real object stays for many frames. Per frame, in order:

1. the top-1 score (0 without a detection) is smoothed: ``s_t = a * s_(t-1) + (1 - a) * score_t``
   (``a`` = ``score_ema``);
2. a hysteresis decides whether the object is there: off -> on once ``s_t >= on_threshold`` for
   ``min_on_frames`` frames in a row (and those frames are then on too), on -> off once
   ``s_t < off_threshold``;
3. while on, the answer's box is an EMA of the top-1 boxes (``b_t = c * b_(t-1) + (1 - c) * box_t``,
   ``c`` = ``box_ema``) over frames whose own score reaches ``off_threshold``; other frames hold the
   last box, and a box that does not overlap the last one restarts the EMA (the object moved fast
   or it is another one).

:class:`TemporalFilter` is causal and streams: :meth:`~TemporalFilter.push` returns the answers
that are final, at most ``min_on_frames - 1`` frames late; :meth:`~TemporalFilter.flush` the rest.

Thresholds set to ``calibrated`` follow the per-frame presence threshold in use (the checkpoint's
calibrated one, or ``evaluate.score_threshold`` / ``--score-threshold`` where a number overrides
it): ``on_threshold`` = that threshold, ``off_threshold`` = :data:`OFF_RATIO` of the on threshold
(:func:`resolve_temporal`); the filter itself takes numbers only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torchvision.ops import box_iou

from pipeline.config import CALIBRATED, TemporalConfig

log = logging.getLogger(__name__)

#: ``off_threshold: calibrated`` is this share of the on threshold (0.2 / 0.3, the fixed defaults
#: the hysteresis had before the presence threshold was calibrated).
OFF_RATIO = 2 / 3


def resolve_temporal(cfg: TemporalConfig, presence_threshold: float) -> TemporalConfig:
    """``cfg`` with numeric thresholds: ``calibrated`` on = ``presence_threshold``, ``calibrated``
    off = :data:`OFF_RATIO` x on. A number for off above the resolved on is lowered to it (logged)."""
    on = presence_threshold if cfg.on_threshold == CALIBRATED else cfg.on_threshold
    off = round(OFF_RATIO * on, 6) if cfg.off_threshold == CALIBRATED else cfg.off_threshold
    if off > on:  # type: ignore[operator]
        log.warning("temporal.off_threshold %.3g exceeds the on threshold %.3g; using %.3g for both", off, on, on)
        off = on
    return dataclasses.replace(cfg, on_threshold=float(on), off_threshold=float(off))  # type: ignore[arg-type]


class Answer(NamedTuple):
    """The filtered answer for one frame: ``box`` ``[4]`` xyxy px (None = "not here") and the
    smoothed score."""

    box: np.ndarray | None
    score: float


class TemporalFilter:
    """Streaming score smoothing, on/off hysteresis and box smoothing (see the module docstring)."""

    def __init__(self, cfg: TemporalConfig) -> None:
        if isinstance(cfg.on_threshold, str) or isinstance(cfg.off_threshold, str):
            raise ValueError("TemporalFilter: thresholds are 'calibrated'; resolve them first (resolve_temporal)")
        if cfg.off_threshold > cfg.on_threshold:
            raise ValueError(f"off_threshold {cfg.off_threshold} exceeds on_threshold {cfg.on_threshold}")
        self.cfg = cfg
        self.on = False
        self._score: float | None = None  # smoothed score
        self._box: np.ndarray | None = None  # smoothed box while on
        self._pending: list[tuple[np.ndarray, float, float]] = []  # (box, raw score, smoothed) awaiting confirmation

    def push(self, box: np.ndarray | Sequence[float] | None, score: float) -> list[Answer]:
        """Feed the next frame's top-1 ``box`` ``[4]`` (None: no detection) and its score; returns
        the answers made final by it, in frame order (empty while a detection awaits confirmation)."""
        cfg = self.cfg
        raw = None if box is None else np.asarray(box, dtype=np.float64).reshape(4)
        score = float(score) if raw is not None else 0.0
        a = cfg.score_ema
        self._score = score if self._score is None else a * self._score + (1.0 - a) * score
        s = self._score
        if self.on:
            if s < cfg.off_threshold:
                self.on, self._box = False, None
                return [Answer(None, s)]
            if raw is not None and score >= cfg.off_threshold:
                self._update_box(raw)
            return [Answer(self._box.copy(), s)]  # type: ignore[union-attr]
        if s >= cfg.on_threshold and raw is not None:
            self._pending.append((raw, score, s))
            if len(self._pending) < cfg.min_on_frames:
                return []
            self.on = True
            out = []
            for pending_box, _, pending_s in self._pending:  # confirmed: the run so far is on too
                self._update_box(pending_box)
                out.append(Answer(self._box.copy(), pending_s))  # type: ignore[union-attr]
            self._pending = []
            return out
        return self._drop_pending() + [Answer(None, s)]

    def flush(self) -> list[Answer]:
        """The answers still pending at the end of the video: an unconfirmed run is off."""
        return self._drop_pending()

    def _drop_pending(self) -> list[Answer]:
        out = [Answer(None, s) for _, _, s in self._pending]
        self._pending = []
        return out

    def _update_box(self, raw: np.ndarray) -> None:
        if self._box is None or _iou(self._box, raw) <= 0.0:
            self._box = raw.copy()
        else:
            c = self.cfg.box_ema
            self._box = c * self._box + (1.0 - c) * raw


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou(torch.as_tensor(a[None]), torch.as_tensor(b[None]))[0, 0])


def smooth_track(
    boxes: Sequence[np.ndarray | Sequence[float] | None], scores: Sequence[float], cfg: TemporalConfig
) -> list[np.ndarray | None]:
    """Filter a whole video at once: per frame (in order) the top-1 box ``[4]`` or None and its
    score in, the answer's box ``[4]`` (float64) or None out, same length."""
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    filt = TemporalFilter(cfg)
    out: list[np.ndarray | None] = []
    for box, score in zip(boxes, scores):
        out.extend(a.box for a in filt.push(box, score))
    out.extend(a.box for a in filt.flush())
    return out
