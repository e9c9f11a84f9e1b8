"""Tracking-by-detection over each frame's top-k candidates (``temporal.method: track``).

A detector's top-1 box is often a look-alike while the target is among its other candidates, and
it answers on frames where the target is absent. Here each frame offers its top-k candidates plus
"absent", and the answer for the clip is the path through them with the highest total reward:

* a candidate earns ``score_weight * (logit(score) - logit(threshold))`` (above the presence
  threshold: positive), "absent" earns 0;
* staying on a track costs ``motion_weight * d2 + appearance_weight * (1 - cos)``: ``d2`` the squared
  Mahalanobis distance of the box from the track's constant-velocity Kalman prediction
  (:mod:`.kalman`), ``cos`` the cosine of the candidate's appearance embedding and the track's
  (an EMA of the embeddings on it); a move with ``d2 > gate`` is rejected as an implausible jump;
* starting or ending a track costs ``switch_cost``.

Each state keeps the Kalman estimate and embedding of its best incoming path, so the search is
Viterbi over candidates with per-path motion (exact for the rewards, approximate for the Kalman
states). ``mode: offline`` backtracks over the whole clip (submissions); ``mode: online`` answers
each frame with its best state so far (causal, for streaming). Offline also fills misses of up to
``max_gap`` frames between two parts of one track (boxes interpolated, when the later box is
within the gate of the earlier one's prediction) and drops runs of answers shorter than
``min_segment`` frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.config import TrackConfig
from pipeline.inference import kalman
from pipeline.inference.kalman import Gaussian

_EPS = 1e-6
_EMBEDDING_EMA = 0.8  # weight of the track's past in its appearance embedding


@dataclass(frozen=True)
class Candidates:
    """One frame's candidates, best first: ``boxes [K, 4]`` xyxy px, ``scores [K]`` in (0, 1] and
    ``embeddings [K, D]`` (L2-normalised appearance vectors; None when the model gives none)."""

    boxes: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"Candidates: {len(boxes)} boxes but {len(scores)} scores")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        if self.embeddings is not None:
            emb = np.asarray(self.embeddings, dtype=np.float64).reshape(len(boxes), -1)
            object.__setattr__(self, "embeddings", emb)

    def top(self, k: int) -> Candidates:
        order = np.argsort(-self.scores, kind="stable")[:k]
        emb = None if self.embeddings is None else self.embeddings[order]
        return Candidates(self.boxes[order], self.scores[order], emb)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class _State:
    """The best path ending in one state of one frame."""

    total: float
    back: int  # index of the previous frame's state (-1: none); the last index is "absent"
    filter: Gaussian | None  # Kalman estimate after this frame (None: absent)
    embedding: np.ndarray | None


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def _cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return 1.0  # no appearance: no cost
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 1.0


def _blend(track: np.ndarray | None, new: np.ndarray | None) -> np.ndarray | None:
    if track is None or new is None:
        return new
    mixed = _EMBEDDING_EMA * track + (1 - _EMBEDDING_EMA) * new
    norm = np.linalg.norm(mixed)
    return mixed / norm if norm > 0 else mixed


class PathSearch:
    """Viterbi over candidates (see the module docstring), fed one frame at a time.

    :meth:`push` adds a frame and returns the online answer for it; :meth:`backtrack` gives the
    offline answer for every frame pushed so far.
    """

    def __init__(self, cfg: TrackConfig, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"PathSearch: threshold must be in [0, 1], got {threshold}")
        self.cfg = cfg
        self.threshold = float(threshold)
        self._bias = _logit(threshold)
        self._frames: list[Candidates] = []
        self._states: list[list[_State]] = []

    def _reward(self, score: float) -> float:
        return self.cfg.score_weight * (_logit(score) - self._bias)

    def push(self, frame: Candidates) -> int | None:
        """Add the next frame; returns the online answer: the index of the chosen candidate
        (in ``frame.top(cfg.top_k)`` order, i.e. by score) or None (absent)."""
        cfg = self.cfg
        frame = frame.top(cfg.top_k)
        previous = self._states[-1] if self._states else [_State(0.0, -1, None, None)]
        absent_prev = len(previous) - 1
        states: list[_State] = []
        # each track's prediction and its distance to every candidate, once per frame
        tracks = previous[:absent_prev]
        priors = [kalman.predict(t.filter, cfg.motion_noise) for t in tracks]  # type: ignore[arg-type]
        distances = [kalman.mahalanobis2_all(prior, frame.boxes) for prior in priors]
        for i in range(len(frame)):
            box, emb = frame.boxes[i], None if frame.embeddings is None else frame.embeddings[i]
            reward = self._reward(float(frame.scores[i]))
            # from "absent": a new track
            best = _State(previous[absent_prev].total - cfg.switch_cost + reward, absent_prev, None, emb)
            best_prior: Gaussian | None = None
            for p, state in enumerate(tracks):
                prior, d2 = priors[p], float(distances[p][i])
                if d2 > cfg.gate:
                    continue  # an implausible jump: only through "absent"
                cost = cfg.motion_weight * d2 + cfg.appearance_weight * (1.0 - _cosine(state.embedding, emb))
                total = state.total - cost + reward
                if total > best.total:
                    best, best_prior = _State(total, p, None, _blend(state.embedding, emb)), prior
            best.filter = kalman.initiate(box) if best_prior is None else kalman.update(best_prior, box)
            states.append(best)
        # "absent": from a track (ending it) or from "absent"
        absent = _State(previous[absent_prev].total, absent_prev, None, None)
        for p, state in enumerate(previous[:absent_prev]):
            if state.total - cfg.switch_cost > absent.total:
                absent = _State(state.total - cfg.switch_cost, p, None, None)
        states.append(absent)
        self._frames.append(frame)
        self._states.append(states)
        best_now = max(range(len(states)), key=lambda s: states[s].total)
        return None if best_now == len(states) - 1 else best_now

    def backtrack(self) -> list[int | None]:
        """The best path's state per frame: a candidate index (by score) or None (absent)."""
        if not self._states:
            return []
        last = self._states[-1]
        s = max(range(len(last)), key=lambda i: last[i].total)
        path: list[int | None] = []
        for t in range(len(self._states) - 1, -1, -1):
            states = self._states[t]
            path.append(None if s == len(states) - 1 else s)
            s = states[s].back
        return path[::-1]

    def offline_answers(self) -> list[np.ndarray | None]:
        """Every frame's answer on the best path (a box ``[4]`` or None), gaps of at most
        ``max_gap`` filled, runs shorter than ``min_segment`` dropped."""
        path = self.backtrack()
        boxes = [self.box(t, c) for t, c in enumerate(path)]
        estimates = [None if c is None else self._states[t][c].filter for t, c in enumerate(path)]
        boxes = fill_gaps(boxes, estimates, self.cfg.max_gap, self.cfg.gate, self.cfg.motion_noise)
        return drop_short(boxes, self.cfg.min_segment)

    def box(self, t: int, choice: int | None) -> np.ndarray | None:
        """Frame ``t``'s box ``[4]`` for ``choice`` (a candidate index or None)."""
        return None if choice is None else self._frames[t].boxes[choice].copy()


def fill_gaps(boxes: list[np.ndarray | None], estimates: Sequence[Gaussian | None], max_gap: int, gate: float,
              motion_noise: float) -> list[np.ndarray | None]:
    """Fill runs of at most ``max_gap`` Nones between two boxes with boxes interpolated between
    them, where the later box lies within ``gate`` of the earlier one's Kalman prediction
    (``estimates[t]``: the estimate at each answered frame)."""
    out = list(boxes)
    answered = [t for t, b in enumerate(boxes) if b is not None]
    for a, b in zip(answered, answered[1:]):
        gap = b - a - 1
        if gap < 1 or gap > max_gap or estimates[a] is None:
            continue
        state = estimates[a]
        for _ in range(gap + 1):
            state = kalman.predict(state, motion_noise)
        if kalman.mahalanobis2(state, boxes[b]) > gate:  # type: ignore[arg-type]
            continue
        for t in range(a + 1, b):
            w = (t - a) / (b - a)
            out[t] = (1 - w) * boxes[a] + w * boxes[b]  # type: ignore[operator]
    return out


def drop_short(boxes: list[np.ndarray | None], min_segment: int) -> list[np.ndarray | None]:
    """``boxes`` with every run of consecutive answers shorter than ``min_segment`` set to None."""
    out = list(boxes)
    t = 0
    while t < len(out):
        if out[t] is None:
            t += 1
            continue
        end = t
        while end < len(out) and out[end] is not None:
            end += 1
        if end - t < min_segment:
            out[t:end] = [None] * (end - t)
        t = end
    return out


def track(frames: Sequence[Candidates], cfg: TrackConfig, threshold: float) -> list[np.ndarray | None]:
    """The answer for every frame of one clip: a box ``[4]`` xyxy (float64) or None (absent).

    ``threshold``: the presence threshold in use (a candidate scoring above it is worth answering
    on its own). ``cfg.mode`` decides offline (best path, gap filling, short runs dropped) or
    online (each frame's best state when it arrives).
    """
    search = PathSearch(cfg, threshold)
    online = [search.box(t, search.push(f)) for t, f in enumerate(frames)]
    return online if cfg.mode == "online" else search.offline_answers()
