"""Tracking over candidates on hand-made clips: the target that disappears and returns, a
distractor that crosses it, a jump that must be rejected, and online vs offline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pipeline.config import TrackConfig
from pipeline.inference import kalman
from pipeline.inference.tracker import Candidates, PathSearch, drop_short, fill_gaps, track
from pipeline.metrics.stiou import st_iou

SIDE = 40.0


def box_at(x: float, y: float, side: float = SIDE) -> np.ndarray:
    return np.array([x - side / 2, y - side / 2, x + side / 2, y + side / 2])


def frame(*items: tuple[np.ndarray, float, np.ndarray | None]) -> Candidates:
    boxes = np.array([b for b, _, _ in items]).reshape(-1, 4)
    scores = np.array([s for _, s, _ in items])
    embs = None if any(e is None for _, _, e in items) else np.array([e for _, _, e in items])
    return Candidates(boxes, scores, embs)


TARGET, OTHER = np.array([1.0, 0.0]), np.array([0.0, 1.0])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(x2 - x1, 0) * max(y2 - y1, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ------------------------------------------------------------------------------------------------
# Kalman filter
# ------------------------------------------------------------------------------------------------


def test_kalman_learns_constant_velocity() -> None:
    state = kalman.initiate(box_at(100, 100))
    for t in range(1, 15):
        state = kalman.update(kalman.predict(state), box_at(100 + 5 * t, 100 - 2 * t))
    ahead = kalman.predict(state)
    np.testing.assert_allclose(ahead.mean[:2], [100 + 5 * 15, 100 - 2 * 15], atol=1.0)
    np.testing.assert_allclose(ahead.mean[4:6], [5, -2], atol=0.3)


def test_mahalanobis_grows_with_distance_and_gates_a_jump() -> None:
    state = kalman.initiate(box_at(100, 100))
    for t in range(1, 6):
        state = kalman.update(kalman.predict(state), box_at(100 + 3 * t, 100))
    prior = kalman.predict(state)
    near, far, jump = (kalman.mahalanobis2(prior, box_at(x, 100)) for x in (118, 130, 300))
    assert near < far < jump
    assert near < kalman.CHI2_95_4DOF < jump


def test_distances_to_many_boxes_equal_one_at_a_time() -> None:
    prior = kalman.predict(kalman.initiate(box_at(100, 100)))
    boxes = np.array([box_at(100 + 7 * k, 100 - 3 * k, 40 + k) for k in range(5)])
    np.testing.assert_allclose(kalman.mahalanobis2_all(prior, boxes), [kalman.mahalanobis2(prior, b) for b in boxes])
    assert kalman.mahalanobis2_all(prior, np.zeros((0, 4))).shape == (0,)


def test_motion_noise_widens_the_gate() -> None:
    state = kalman.initiate(box_at(100, 100))
    tight = kalman.mahalanobis2(kalman.predict(state, 1.0), box_at(140, 100))
    loose = kalman.mahalanobis2(kalman.predict(state, 4.0), box_at(140, 100))
    assert loose < tight


def test_box_measurement_round_trip() -> None:
    box = np.array([10.0, 20.0, 50.0, 80.0])
    np.testing.assert_allclose(kalman.measurement_to_box(kalman.box_to_measurement(box)), box)


# ------------------------------------------------------------------------------------------------
# Hand-made clips
# ------------------------------------------------------------------------------------------------


def truth_path(n: int, start: tuple[float, float] = (100, 100), v: tuple[float, float] = (4, 1)) -> list[np.ndarray]:
    return [box_at(start[0] + v[0] * t, start[1] + v[1] * t) for t in range(n)]


# the knobs these clips were made for (not the defaults, which are tuned on the demo)
CFG = TrackConfig(score_weight=1.0, switch_cost=1.0, motion_noise=1.0, max_gap=7)


def test_target_that_disappears_and_returns() -> None:
    """Present 0-19, gone 20-39 (only a weak false candidate far away), back 40-59 elsewhere."""
    truth = truth_path(20) + [None] * 20 + truth_path(20, start=(600, 300), v=(-3, 0))
    frames = []
    for t, b in enumerate(truth):
        clutter = (box_at(800, 500 - t), 0.15, OTHER)
        frames.append(frame((b, 0.8, TARGET), clutter) if b is not None else frame(clutter))
    out = track(frames, CFG, threshold=0.4)
    assert [o is None for o in out] == [b is None for b in truth]
    assert st_iou(truth, out) == pytest.approx(1.0)


def test_distractor_crossing_the_target_keeps_the_track() -> None:
    """A look-alike crosses the target and outscores it for three frames near the crossing."""
    n = 30
    truth = truth_path(n, start=(100, 200), v=(6, 0))
    frames = []
    for t in range(n):
        d = box_at(400 - 6 * t, 200 + 0.5 * (t - 15) ** 2 / 4 + 30)  # comes down from the right
        target_score, distractor_score = (0.45, 0.7) if 13 <= t <= 15 else (0.8, 0.5)
        frames.append(frame((truth[t], target_score, TARGET), (d, distractor_score, OTHER)))
    top1 = [f.boxes[int(np.argmax(f.scores))] for f in frames]
    out = track(frames, CFG, threshold=0.4)
    assert st_iou(truth, top1) < 0.95  # the per-frame answer switches to the distractor
    assert st_iou(truth, out) == pytest.approx(1.0)


def test_implausible_jump_is_rejected() -> None:
    """One frame's only candidate is far off the track: no box that frame, the track goes on."""
    n = 20
    truth = truth_path(n, start=(100, 100), v=(3, 0))
    frames = [frame((b, 0.8, None)) for b in truth]
    frames[10] = frame((box_at(700, 450), 0.8, None))  # the target missed, a far false hit instead
    cfg = dataclasses.replace(CFG, max_gap=0)
    out = track(frames, cfg, threshold=0.4)
    assert out[10] is None
    assert all(out[t] is not None for t in range(n) if t != 10)
    # with gap filling the miss is bridged by interpolation
    filled = track(frames, CFG, threshold=0.4)
    assert iou(filled[10], truth[10]) > 0.9


def test_gap_filling_only_for_short_consistent_gaps() -> None:
    boxes = [box_at(100 + 5 * t, 100) for t in range(10)]
    est = []
    state = kalman.initiate(boxes[0])
    for t, b in enumerate(boxes):
        state = kalman.update(kalman.predict(state), b) if t else state
        est.append(state)
    holes: list = list(boxes)
    holes[4:7] = [None] * 3
    filled = fill_gaps(holes, est, max_gap=3, gate=kalman.CHI2_95_4DOF, motion_noise=1.0)
    np.testing.assert_allclose(filled[5], boxes[5])
    assert fill_gaps(holes, est, max_gap=2, gate=kalman.CHI2_95_4DOF, motion_noise=1.0)[5] is None
    far = list(holes)
    far[7] = box_at(600, 400)
    assert fill_gaps(far, est, max_gap=3, gate=kalman.CHI2_95_4DOF, motion_noise=1.0)[5] is None


def test_drop_short_removes_brief_runs() -> None:
    b = box_at(0, 0)
    runs = [b, None, b, b, None, b, b, b]
    out = drop_short(runs, 3)
    assert [o is not None for o in out] == [False, False, False, False, False, True, True, True]
    assert drop_short(runs, 1) == runs


def test_flicker_is_not_answered_offline() -> None:
    """A lone above-threshold frame among absent frames costs two switches: dropped."""
    frames = [frame((box_at(300, 300), 0.05, None)) for _ in range(10)]
    frames[5] = frame((box_at(300, 300), 0.6, None))
    assert all(o is None for o in track(frames, CFG, threshold=0.5))


def test_appearance_picks_the_track_identity() -> None:
    """Two candidates equally near the prediction and equally scored: the one that looks like the
    track wins."""
    n = 12
    truth = truth_path(n, v=(2, 0))
    frames = [frame((b, 0.8, TARGET)) for b in truth[:6]]
    for t in range(6, n):
        lookalike = truth[t] + np.array([8, 0, 8, 0])
        frames.append(frame((lookalike, 0.7, OTHER), (truth[t], 0.7, TARGET)))
    out = track(frames, dataclasses.replace(CFG, appearance_weight=2.0), threshold=0.4)
    assert st_iou(truth, out) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------
# Online vs offline
# ------------------------------------------------------------------------------------------------


def test_online_and_offline_agree_on_an_unambiguous_clip() -> None:
    truth = truth_path(15) + [None] * 5 + truth_path(15, start=(400, 300))
    frames = [frame((b, 0.9, TARGET), (box_at(900, 100), 0.1, OTHER)) if b is not None
              else frame((box_at(900, 100), 0.1, OTHER)) for b in truth]
    online = track(frames, dataclasses.replace(CFG, mode="online"), threshold=0.5)
    offline = track(frames, CFG, threshold=0.5)
    assert [o is None for o in online] == [o is None for o in offline]
    for a, b in zip(online, offline):
        if a is not None:
            np.testing.assert_allclose(a, b)


def test_offline_revises_what_online_had_to_guess() -> None:
    """At the crossing the online answer follows the distractor's higher score for a while;
    the offline path, seeing what comes after, does not."""
    n = 30
    truth = truth_path(n, start=(100, 200), v=(6, 0))
    frames = []
    for t in range(n):
        d = box_at(100 + 6 * 13, 200 + 40) if t >= 13 else box_at(900, 500)
        ts, ds = (0.45, 0.75) if 13 <= t <= 15 else (0.8, 0.3)
        frames.append(frame((truth[t], ts, None), (d, ds, None)))
    online = track(frames, dataclasses.replace(CFG, mode="online", motion_weight=0.0), threshold=0.4)
    offline = track(frames, dataclasses.replace(CFG, motion_weight=0.0), threshold=0.4)
    assert st_iou(truth, online) < st_iou(truth, offline) == pytest.approx(1.0)


def test_path_search_checks_threshold_and_shapes() -> None:
    with pytest.raises(ValueError, match="threshold"):
        PathSearch(CFG, 1.5)
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        Candidates(np.zeros((2, 4)), np.zeros(1))


def test_empty_frames_and_clip() -> None:
    assert track([], CFG, 0.5) == []
    empty = Candidates(np.zeros((0, 4)), np.zeros(0))
    assert track([empty, empty], CFG, 0.5) == [None, None]
