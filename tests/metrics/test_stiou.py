"""ST-IoU on hand-made cases, the per-sequence table and submission scoring."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics.stiou import (
    BadDocument,
    score_submission,
    sequence_table,
    st_iou,
    summarize_sequences,
    thresholded,
    top1,
)

B = (10.0, 10.0, 30.0, 30.0)  # 20 x 20


def test_perfect_video_is_one():
    truth = [None, B, B, B, None]
    assert st_iou(truth, list(truth)) == 1.0


@pytest.mark.parametrize("n", [1, 3, 10])
def test_one_extra_frame_costs_one_frame(n):
    truth = [B] * n + [None]
    pred = [B] * (n + 1)  # fires on the frame without the target
    assert st_iou(truth, pred) == pytest.approx(n / (n + 1))


def test_one_missed_frame_costs_one_frame():
    assert st_iou([B, B, B, B], [B, None, B, B]) == pytest.approx(3 / 4)


def test_one_shifted_box_gives_its_iou():
    shifted = (15.0, 10.0, 35.0, 30.0)  # 5 px right: overlap 15 x 20 = 300, union 400 + 400 - 300 = 500
    iou = 300 / 500
    assert st_iou([B, B, B], [B, shifted, B]) == pytest.approx((2 + iou) / 3)


def test_false_positive_frames_count_in_the_union():
    # 2 true frames, perfect; 2 frames with nothing there but a box said: 2 / 4
    assert st_iou([B, B, None, None], [B, B, B, B]) == pytest.approx(0.5)


def test_empty_video_without_answers_is_one_and_silence_on_a_target_is_zero():
    assert st_iou([None, None], [None, None]) == 1.0
    assert st_iou([B, B], [None, None]) == 0.0
    assert st_iou([None, None], [B, None]) == 0.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 frames of truth but 1"):
        st_iou([B, B], [B])


def test_top1_and_threshold():
    dets = [
        (np.array([[0, 0, 5, 5], [10, 10, 30, 30]], float), np.array([0.2, 0.9])),  # not sorted: max wins
        (np.zeros((0, 4)), np.zeros(0)),
        (np.array([[1, 1, 4, 4]], float), np.array([0.1])),
    ]
    boxes, scores = top1(dets)
    np.testing.assert_array_equal(boxes[0], [10, 10, 30, 30])
    assert boxes[1] is None and scores.tolist() == [0.9, 0.0, 0.1]
    kept = thresholded(boxes, scores, 0.3)
    assert kept[0] is not None and kept[1] is None and kept[2] is None


def test_sequence_table_orders_frames_and_averages_sequences():
    # two sequences given out of frame order; seq "b" has an extra predicted frame
    seqs = ["b", "a", "b", "a", "b"]
    frames = [2, 1, 0, 0, 1]
    truth = [None, B, B, B, B]
    pred = [B, B, B, B, B]
    smoothed = [None, B, B, B, B]
    table = sequence_table(seqs, ["o2", "o1", "o2", "o1", "o2"], frames, truth, pred, smoothed)
    assert table["sequence_id"].tolist() == ["a", "b"]
    assert table["object_id"].tolist() == ["o1", "o2"]
    assert table["frames"].tolist() == [2, 3] and table["frames_with_target"].tolist() == [2, 2]
    assert table["st_iou"].tolist() == pytest.approx([1.0, 2 / 3])
    assert table["st_iou_temporal"].tolist() == pytest.approx([1.0, 1.0])
    summary = summarize_sequences(table)
    assert summary == {"sequences": 2, "st_iou": pytest.approx((1 + 2 / 3) / 2), "st_iou_temporal": 1.0,
                       "st_iou_tracked": None}
    without = summarize_sequences(sequence_table(seqs, seqs, frames, truth, pred))
    assert without["st_iou_temporal"] is None
    # the tracked answers get columns of their own: "a" misses one of its 2 frames, "b" is exact
    tracked = [None, None, B, B, B]
    both = sequence_table(seqs, seqs, frames, truth, pred, smoothed, tracked)
    assert both["st_iou_tracked"].tolist() == pytest.approx([0.5, 1.0])
    assert both["frames_predicted_tracked"].tolist() == [1, 2]
    assert both["st_iou_temporal"].tolist() == pytest.approx([1.0, 1.0])


def test_score_submission_per_video():
    truth = [
        {"video_id": "v1", "annotations": [{"bboxes": [{"frame": 3, "x1": 10, "y1": 10, "x2": 30, "y2": 30}]},
                                           {"bboxes": [{"frame": 7, "x1": 10, "y1": 10, "x2": 30, "y2": 30}]}]},
        {"video_id": "v2", "annotations": []},
        {"video_id": "v3", "annotations": [{"bboxes": [{"frame": 0, "x1": 0, "y1": 0, "x2": 5, "y2": 5}]}]},
    ]
    sub = [
        {"video_id": "v1", "detections": [{"bboxes": [{"frame": 3, "x1": 15, "y1": 10, "x2": 35, "y2": 30},
                                                      {"frame": 4, "x1": 10, "y1": 10, "x2": 30, "y2": 30}]}]},
        {"video_id": "v2", "detections": []},
    ]  # v3 missing: no detections
    assert score_submission(truth, sub) == pytest.approx({"v1": 0.6 / 3, "v2": 1.0, "v3": 0.0})


def test_bad_submission_names_the_video():
    truth = [{"video_id": "v1", "annotations": []}]
    with pytest.raises(BadDocument, match="submission: video v1: missing key 'detections'"):
        score_submission(truth, [{"video_id": "v1"}])
    dup = [{"video_id": "v1", "detections": [{"bboxes": [{"frame": 1, "x1": 0, "y1": 0, "x2": 1, "y2": 1}] * 2}]}]
    with pytest.raises(BadDocument, match="frame 1 has two boxes"):
        score_submission(truth, dup)


def test_sequence_table_equals_st_iou_per_sequence_on_random_frames():
    rng = np.random.default_rng(3)
    n = 400
    seqs = [f"s{int(i)}" for i in rng.integers(0, 37, n)]  # shuffled, uneven lengths
    frames = rng.permutation(n).tolist()

    def boxes(p_none: float) -> list:
        xy = rng.uniform(0, 50, (n, 2))
        wh = rng.uniform(5, 30, (n, 2))
        return [None if rng.random() < p_none else (*a, *(a + b)) for a, b in zip(xy, wh)]

    truth, pred, smoothed = boxes(0.3), boxes(0.3), boxes(0.5)
    table = sequence_table(seqs, seqs, frames, truth, pred, smoothed)
    assert table["sequence_id"].tolist() == sorted(set(seqs))
    for row in table.itertuples():
        pos = [i for i in range(n) if seqs[i] == row.sequence_id]
        assert row.frames == len(pos)
        assert row.frames_with_target == sum(truth[i] is not None for i in pos)
        assert row.frames_predicted_temporal == sum(smoothed[i] is not None for i in pos)
        assert row.st_iou == pytest.approx(st_iou([truth[i] for i in pos], [pred[i] for i in pos]), abs=1e-12)
        assert row.st_iou_temporal == pytest.approx(
            st_iou([truth[i] for i in pos], [smoothed[i] for i in pos]), abs=1e-12)


def test_st_iou_matches_torchvision_box_iou():
    from torchvision.ops import box_iou
    import torch

    rng = np.random.default_rng(4)
    a = rng.uniform(0, 40, (20, 2))
    t = [tuple(v) for v in np.concatenate([a, a + rng.uniform(5, 20, (20, 2))], 1)]
    p = [tuple(v) for v in np.concatenate([a + 3, a + 3 + rng.uniform(5, 20, (20, 2))], 1)]
    golden = box_iou(torch.tensor(p, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)).diagonal().mean()
    assert st_iou(t, p) == pytest.approx(float(golden), abs=1e-12)
