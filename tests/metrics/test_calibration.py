"""Presence-threshold selection and ECE against hand-computed values."""

import numpy as np
import pandas as pd
import pytest

from pipeline.metrics.calibration import (
    FLOOR,
    RELIABILITY_COLUMNS,
    candidate_thresholds,
    choose_threshold,
    expected_calibration_error,
    f1_curve,
    reliability_table,
    st_iou_curve,
)
from pipeline.metrics.stiou import sequence_table, summarize_sequences, thresholded
from pipeline.metrics.topone import summarize, top1_table

NAN = float("nan")


def frames(*rows):
    """A top-1 table from rows of (present, score, iou)."""
    present, score, iou = zip(*rows)
    return pd.DataFrame({"present": present, "score": score, "iou": iou})


# present, score, IoU: hit, hit, false positive, miss, low false positive, target with no detection
F1_CASE = frames((True, 0.9, 0.8), (True, 0.6, 0.7), (False, 0.7, NAN), (True, 0.4, 0.2), (False, 0.2, NAN),
                 (True, 0.0, NAN))


def test_candidates_are_the_floor_and_the_observed_scores_above_it():
    np.testing.assert_allclose(candidate_thresholds(F1_CASE["score"].to_numpy()), [FLOOR, 0.2, 0.4, 0.6, 0.7, 0.9])


def test_f1_curve_golden_values_agree_with_summarize():
    thresholds = candidate_thresholds(F1_CASE["score"].to_numpy())
    # fired / TP: 5/2, 5/2, 4/2, 3/2, 2/1, 1/1 of 4 frames with the target
    np.testing.assert_allclose(f1_curve(F1_CASE, thresholds, 0.5), [4 / 9, 4 / 9, 0.5, 4 / 7, 1 / 3, 0.4])
    for t, f1 in zip(thresholds, f1_curve(F1_CASE, thresholds, 0.5)):
        assert summarize(F1_CASE, t, 0.5)["f1"] == pytest.approx(f1)


def test_f1_chooses_the_best_threshold():
    chosen = choose_threshold(F1_CASE, "f1", 0.5)
    assert chosen.score_threshold == 0.6 and chosen.value == pytest.approx(4 / 7)
    assert chosen.as_dict() == {"score_threshold": 0.6, "metric": "f1", "value": pytest.approx(4 / 7), "frames": 6}


def test_ties_choose_the_highest_threshold():
    # 0.6 fires on all four (P 0.5, R 1), 0.9 on the first only (P 1, R 0.5): F1 2/3 both
    table = frames((True, 0.9, 0.9), (True, 0.6, 0.9), (False, 0.8, NAN), (False, 0.7, NAN))
    chosen = choose_threshold(table, "f1", 0.5)
    assert (chosen.score_threshold, chosen.value) == (0.9, pytest.approx(2 / 3))
    # the floor fires on the same frames as the lowest score: the score wins
    assert choose_threshold(frames((True, 0.5, 0.9)), "f1", 0.5).score_threshold == 0.5


def test_st_iou_golden_values_agree_with_the_sequence_table():
    table = frames((True, 0.9, 0.8), (True, 0.3, 0.6), (False, 0.5, NAN), (False, 0.4, NAN), (False, 0.1, NAN))
    seqs = ["s1", "s1", "s1", "s2", "s2"]
    chosen = choose_threshold(table, "st_iou", 0.5, seqs)
    # at 0.9: s1 = 0.8 / 2 frames, s2 = 1 (nothing there, nothing said) -> 0.7
    assert (chosen.score_threshold, chosen.value, chosen.frames) == (0.9, pytest.approx(0.7), 5)
    # the same number through the ST-IoU module, with boxes whose IoU with the truth is known
    truth = [(0, 0, 10, 10), (0, 0, 10, 10), None, None, None]
    boxes = [np.array([0, 0, 10, 8.0]), np.array([0, 0, 10, 6.0]), np.array([0, 0, 5, 5.0]),
             np.array([0, 0, 5, 5.0]), np.array([0, 0, 5, 5.0])]
    scores = table["score"].to_numpy()
    for t, expected in ((0.5, (0.8 / 3 + 1) / 2), (0.01, (1.4 / 3 + 0) / 2), (0.9, 0.7)):
        seq = sequence_table(seqs, ["o"] * 5, range(5), truth, thresholded(boxes, scores, t))
        assert summarize_sequences(seq)["st_iou"] == pytest.approx(expected)
        assert st_iou_curve(table, seqs, np.array([t]))[0] == pytest.approx(expected)


def test_st_iou_needs_sequences_and_undefined_metrics_fall_back():
    with pytest.raises(ValueError, match="sequence_ids"):
        choose_threshold(F1_CASE, "st_iou", 0.5)
    no_target = frames((False, 0.8, NAN), (False, 0.4, NAN))
    chosen = choose_threshold(no_target, "f1", 0.5, fallback=0.3)
    assert (chosen.score_threshold, chosen.value, chosen.frames) == (0.3, None, 2)
    assert choose_threshold(no_target.iloc[:0], "st_iou", 0.5, []).value is None


def test_perfectly_calibrated_scores_have_zero_ece():
    rows = [(True, 0.25, 0.9)] + [(False, 0.25, NAN)] * 3 + [(True, 0.75, 0.9)] * 3 + [(True, 0.75, 0.1)]
    rel = reliability_table(frames(*rows), 0.5)
    assert list(rel.columns) == RELIABILITY_COLUMNS and len(rel) == 10
    assert rel["frames"].tolist() == [0, 0, 4, 0, 0, 0, 0, 4, 0, 0]
    assert rel.loc[2, "accuracy"] == 0.25 and rel.loc[7, "accuracy"] == 0.75
    assert np.isnan(rel.loc[0, "mean_score"]) and np.isnan(rel.loc[0, "accuracy"])
    assert expected_calibration_error(rel) == pytest.approx(0.0)


def test_ece_golden_value():
    # bin 9: scores 0.95, one right of two (gap 0.45); bin 1: scores 0.15, one right of two (gap 0.35)
    table = frames((True, 0.95, 0.9), (False, 0.95, NAN), (True, 0.15, 0.1), (True, 0.15, 0.6))
    assert expected_calibration_error(reliability_table(table, 0.5)) == pytest.approx((2 * 0.45 + 2 * 0.35) / 4)
    # a score of 1 is in the last bin; a frame without a detection (score 0) in the first, never right
    rel = reliability_table(frames((True, 1.0, 1.0), (True, 0.0, NAN)), 0.5)
    assert rel.loc[9, "frames"] == 1 and rel.loc[0, "frames"] == 1
    assert expected_calibration_error(rel) == pytest.approx(0.0)
    assert expected_calibration_error(reliability_table(F1_CASE.iloc[:0], 0.5)) is None


def test_reliability_from_real_detections():
    gt = [(10, 10, 50, 50), None]
    dets = [(np.array([[10, 10, 50, 50.0]]), np.array([0.8])), (np.array([[0, 0, 5, 5.0]]), np.array([0.8]))]
    rel = reliability_table(top1_table(gt, dets), 0.5)
    assert rel.loc[8, "frames"] == 2 and rel.loc[8, "accuracy"] == 0.5
    assert expected_calibration_error(rel) == pytest.approx(0.3)
