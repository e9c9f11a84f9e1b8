"""Temporal post-processing: flickers go, real detections stay, boxes are smoothed, streaming = batch."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ConfigError, TemporalConfig, parse_params
from pipeline.inference.temporal import OFF_RATIO, TemporalFilter, resolve_temporal, smooth_track
from pipeline.metrics.stiou import st_iou

B = np.array([100.0, 100.0, 140.0, 130.0])
ELSEWHERE = np.array([300.0, 20.0, 330.0, 50.0])


def _cfg(**keys) -> TemporalConfig:
    """The defaults with the thresholds the presence threshold 0.3 resolves to (on 0.3, off 0.2)."""
    return TemporalConfig(**{"on_threshold": 0.3, "off_threshold": 0.2, **keys})


CFG = _cfg()  # on 0.3, off 0.2, 2 frames to turn on, EMA 0.3 / 0.3


def _run(scores, boxes=None, cfg=CFG):
    boxes = boxes if boxes is not None else [B if s > 0 else None for s in scores]
    return smooth_track(boxes, scores, cfg)


def test_isolated_one_frame_false_positive_is_removed():
    # the object is not there; the detector fires once, confidently, on something else
    scores = [0.05, 0.02, 0.95, 0.03, 0.04]
    boxes = [ELSEWHERE] * 5
    out = _run(scores, boxes)
    assert all(b is None for b in out)
    raw = [b if s >= 0.3 else None for b, s in zip(boxes, scores)]
    truth = [None] * 5
    assert st_iou(truth, out) == 1.0 > st_iou(truth, raw)


def test_real_detection_is_kept_from_its_first_frame_to_its_last():
    scores = [0.0, 0.0, 0.8, 0.7, 0.75, 0.8, 0.0, 0.0, 0.0]
    out = _run(scores)
    on = [b is not None for b in out]
    # confirmed on its second frame, and then the first counts too; the score EMA holds one frame
    # after the object leaves (0.3 * 0.8 = 0.24 >= off 0.2), then it is off
    assert on == [False, False, True, True, True, True, True, False, False]
    for b in out[2:7]:
        np.testing.assert_allclose(b, B)


def test_hysteresis_keeps_a_dip_between_the_thresholds():
    cfg = _cfg(score_ema=0.0, min_on_frames=1)
    out = _run([0.5, 0.25, 0.25, 0.5, 0.1, 0.25], cfg=cfg)
    # 0.25 is below "on" (0.3) but above "off" (0.2): stays on; after 0.1 it needs "on" again
    assert [b is not None for b in out] == [True, True, True, True, False, False]


def test_min_on_frames_one_turns_on_at_once_and_no_smoothing_is_the_raw_threshold():
    cfg = _cfg(score_ema=0.0, box_ema=0.0, min_on_frames=1, on_threshold=0.3, off_threshold=0.3)
    scores = [0.1, 0.9, 0.2, 0.31, 0.0]
    out = _run(scores, cfg=cfg)
    assert [b is not None for b in out] == [s >= 0.3 for s in scores]


def test_box_ema_smooths_jitter_and_restarts_on_a_jump():
    cfg = _cfg(score_ema=0.0, box_ema=0.5, min_on_frames=1)
    jitter = [B, B + [4, 0, 4, 0], B, ELSEWHERE]
    out = _run([0.9] * 4, jitter, cfg)
    np.testing.assert_allclose(out[0], B)
    np.testing.assert_allclose(out[1], B + [2, 0, 2, 0])  # half way
    np.testing.assert_allclose(out[2], B + [1, 0, 1, 0])
    np.testing.assert_allclose(out[3], ELSEWHERE)  # no overlap with the last box: taken as it is


def test_low_scoring_box_while_on_holds_the_last_box():
    cfg = _cfg(score_ema=0.9, box_ema=0.0, min_on_frames=1)
    out = _run([0.9, 0.05], [B, ELSEWHERE], cfg)  # smoothed 0.9 -> 0.815: still on
    np.testing.assert_allclose(out[1], B)


def test_streaming_is_causal_and_matches_the_whole_video():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 40).round(2)
    boxes = [B + rng.normal(0, 2, 4) for _ in scores]
    cfg = _cfg(min_on_frames=3)
    filt = TemporalFilter(cfg)
    streamed, lag = [], []
    for i, (b, s) in enumerate(zip(boxes, scores)):
        got = filt.push(b, s)
        streamed += got
        lag.append(i + 1 - len(streamed))
    streamed += filt.flush()
    assert max(lag) <= cfg.min_on_frames - 1  # answers are at most min_on_frames - 1 frames late
    assert len(streamed) == len(scores)
    whole = smooth_track(boxes, scores, cfg)
    for a, b in zip(streamed, whole):
        assert (a.box is None) == (b is None)
        if b is not None:
            np.testing.assert_allclose(a.box, b)


def test_unconfirmed_run_at_the_end_is_off():
    assert _run([0.0, 0.9]) == [None, None]


def test_off_above_on_is_rejected():
    with pytest.raises(ConfigError, match="temporal.off_threshold: 0.5 must not exceed temporal.on_threshold"):
        parse_params({"temporal": {"on_threshold": 0.4, "off_threshold": 0.5}})
    with pytest.raises(ConfigError, match="temporal.score_ema: 1.0 is out of range"):
        parse_params({"temporal": {"score_ema": 1.0}})


def test_calibrated_thresholds_follow_the_presence_threshold():
    assert resolve_temporal(TemporalConfig(), 0.3) == CFG
    got = resolve_temporal(TemporalConfig(), 0.6)
    assert (got.on_threshold, got.off_threshold) == (0.6, round(0.6 * OFF_RATIO, 6))
    # a number overrides; calibrated off follows a numeric on; a numeric off above on is lowered to it
    got = resolve_temporal(TemporalConfig(on_threshold=0.5), 0.9)
    assert (got.on_threshold, got.off_threshold) == (0.5, round(0.5 * OFF_RATIO, 6))
    got = resolve_temporal(TemporalConfig(off_threshold=0.4), 0.2)
    assert (got.on_threshold, got.off_threshold) == (0.2, 0.2)
    with pytest.raises(ValueError, match="resolve them first"):
        TemporalFilter(TemporalConfig())


def test_temporal_thresholds_parse_calibrated_or_numbers():
    assert parse_params({}).temporal.on_threshold == "calibrated"
    assert parse_params({"temporal": {"on_threshold": 0.4, "off_threshold": "calibrated"}}).temporal.on_threshold == 0.4
    with pytest.raises(ConfigError, match="temporal.off_threshold: 'auto' is not a number or one of calibrated"):
        parse_params({"temporal": {"off_threshold": "auto"}})
