import numpy as np
import pytest

from pipeline.metrics.topone import outcomes, pr_curve, score_histogram, summarize, top1_table


def det(*rows):
    """(boxes, scores) from rows of (x1, y1, x2, y2, score)."""
    a = np.array(rows, dtype=float).reshape(-1, 5)
    return a[:, :4], a[:, 4]


def test_perfect_predictions_score_one():
    gt = [(10, 10, 50, 50), (0, 0, 20, 40), None]
    dets = [det((10, 10, 50, 50, 0.9)), det((0, 0, 20, 40, 0.8)), det()]
    s = summarize(top1_table(gt, dets), 0.5, 0.5)
    assert s["precision"] == s["recall"] == s["f1"] == s["success"] == 1.0
    assert s["mean_iou"] == pytest.approx(1.0)
    assert s["fp_rate"] == 0.0
    assert (s["frames"], s["frames_with_target"]) == (3, 2)


def test_shifted_box_gives_hand_computed_iou():
    # 40x40 box shifted by 10 px in x: overlap 30x40 = 1200, union 2*1600 - 1200 = 2000 -> 0.6
    table = top1_table([(10, 10, 50, 50)], [det((20, 10, 60, 50, 0.9))])
    assert table["iou"][0] == pytest.approx(0.6)
    assert summarize(table, 0.5, 0.5)["mean_iou"] == pytest.approx(0.6)
    # at IoU threshold 0.7 the same box is a miss: fired but wrong, so precision and recall are 0
    s = summarize(table, 0.5, 0.7)
    assert (s["precision"], s["recall"], s["f1"], s["success"], s["mean_iou"]) == (0.0, 0.0, 0.0, 0.0, None)
    assert outcomes(table, 0.5, 0.7).tolist() == ["miss"]


def test_false_positives_on_empty_frames():
    gt = [None, None, None, None]
    dets = [det((0, 0, 5, 5, 0.9)), det((0, 0, 5, 5, 0.2)), det(), det((1, 1, 4, 4, 0.6))]
    table = top1_table(gt, dets)
    s = summarize(table, 0.5, 0.5)
    assert s["fp_rate"] == 0.5
    assert s["precision"] == 0.0
    assert s["recall"] is None and s["success"] is None and s["f1"] is None
    assert outcomes(table, 0.5, 0.5).tolist() == ["FP", "TN", "TN", "FP"]


def test_top1_is_the_highest_score_whatever_the_order():
    table = top1_table([(0, 0, 10, 10)], [det((50, 50, 60, 60, 0.3), (0, 0, 10, 10, 0.7))])
    assert table["score"][0] == 0.7 and table["iou"][0] == pytest.approx(1.0)


def test_outcomes_cover_all_cases():
    gt = [(0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10), None, None]
    dets = [det((0, 0, 10, 10, 0.9)), det((20, 20, 30, 30, 0.9)), det((0, 0, 10, 10, 0.1)), det((0, 0, 1, 1, 0.9)), det()]
    table = top1_table(gt, dets)
    assert outcomes(table, 0.5, 0.5).tolist() == ["TP", "miss", "FN", "FP", "TN"]
    s = summarize(table, 0.5, 0.5)
    assert s["precision"] == pytest.approx(1 / 3)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["success"] == pytest.approx(2 / 3)  # the low-score hit counts for success


def test_pr_curve_sweeps_thresholds():
    gt = [(0, 0, 10, 10), (0, 0, 10, 10), None]
    dets = [det((0, 0, 10, 10, 0.9)), det((0, 0, 10, 10, 0.4)), det((0, 0, 10, 10, 0.6))]
    curve = pr_curve(top1_table(gt, dets), 0.5).set_index("threshold")
    assert curve.loc[0.0].tolist() == pytest.approx([2 / 3, 1.0])
    assert curve.loc[0.5].tolist() == pytest.approx([1 / 2, 1 / 2])
    assert curve.loc[0.7].tolist() == pytest.approx([1.0, 1 / 2])
    assert curve.loc[1.0].tolist() == pytest.approx([1.0, 0.0])  # nothing fires


def test_score_histogram_counts_frames():
    gt = [(0, 0, 10, 10), None, None]
    dets = [det((0, 0, 10, 10, 0.97)), det((0, 0, 1, 1, 0.01)), det()]
    hist = score_histogram(top1_table(gt, dets), bins=10)
    assert hist["with_target"].sum() == 1 and hist["without_target"].sum() == 2
    assert hist.loc[9, "with_target"] == 1 and hist.loc[0, "without_target"] == 2


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 frames of truth but 1"):
        top1_table([None, None], [det()])


def test_paired_iou_matches_the_diagonal_of_torchvisions_box_iou():
    import numpy as np
    import torch
    from torchvision.ops import box_iou

    from pipeline.metrics.topone import paired_iou

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(50, 2, 2))
    a = np.concatenate([xy[:, 0], xy[:, 0] + rng.uniform(1, 40, size=(50, 2))], axis=1)
    b = np.concatenate([xy[:, 1], xy[:, 1] + rng.uniform(1, 40, size=(50, 2))], axis=1)
    b[:10] = a[:10]  # identical boxes: IoU 1
    expected = box_iou(torch.as_tensor(a), torch.as_tensor(b)).diagonal().numpy()
    np.testing.assert_allclose(paired_iou(a, b), expected, rtol=1e-12)
    np.testing.assert_allclose(paired_iou(a[:10], b[:10]), 1.0)
    # hand-made: 10x10 boxes overlapping in a 5x10 strip -> 50 / 150
    assert paired_iou(np.array([[0.0, 0, 10, 10]]), np.array([[5.0, 0, 15, 10]]))[0] == pytest.approx(1 / 3)
