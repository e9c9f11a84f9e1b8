"""Where the points are lost: one hand-made frame per stage, and the summary's counts and oracle."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics.points_lost import ABSENT_STAGES, PRESENT_STAGES, frame_stages, points_lost

T = np.array([100.0, 100.0, 140.0, 140.0])  # the target
OFF = np.array([300.0, 300.0, 340.0, 340.0])  # somewhere else
NEAR = T + np.array([30.0, 0.0, 30.0, 0.0])  # overlaps 10 x 40 px: IoU 400 / 2800 = 1/7


def det(*pairs):
    boxes = np.array([b for b, _ in pairs]).reshape(-1, 4)
    return boxes, np.array([s for _, s in pairs])


FRAMES = [  # (truth, detections, final answer, expected stage)
    (T, det(), None, "no candidate"),
    (T, det((NEAR, 0.9), (OFF, 0.5)), NEAR, "localisation miss"),
    (T, det((OFF, 0.9), (T, 0.5)), OFF, "matching error"),
    (T, det((T, 0.2), (OFF, 0.1)), None, "threshold rejection"),
    (T, det((T, 0.9)), None, "temporal removal"),
    (T, det((T, 0.9)), T, "success"),
    (T, det((OFF, 0.9), (T, 0.5)), T, "success"),  # the tracker picked the right candidate
    (None, det((OFF, 0.9)), OFF, "answered"),
    (None, det((OFF, 0.1)), None, "quiet"),
]


def test_each_frame_gets_its_first_failure():
    truth, detections, final, expected = zip(*FRAMES)
    stages, best, oracle = frame_stages(truth, detections, final, score_threshold=0.3, iou_threshold=0.5)
    assert stages == list(expected)
    assert np.isnan(best[0]) and best[1] == pytest.approx(1 / 7)
    assert best[2] == pytest.approx(1.0) and np.isnan(best[7])
    assert oracle[0] is None and np.allclose(oracle[2], T) and oracle[7] is None


def test_summary_counts_shares_and_oracle():
    truth, detections, final, _ = zip(*FRAMES)
    seqs = ["a"] * len(FRAMES)
    table, summary = points_lost(seqs, list(range(len(FRAMES))), truth, detections, final, 0.3, 0.5, "tracked")
    assert list(table["stage"]) == [f[3] for f in FRAMES]
    assert summary["frames_with_target"] == 7 and summary["frames_without_target"] == 2
    assert set(summary["present"]) == set(PRESENT_STAGES) and set(summary["absent"]) == set(ABSENT_STAGES)
    assert summary["present"]["success"] == {"frames": 2, "share": pytest.approx(2 / 7, abs=1e-6)}
    assert summary["absent"]["answered"]["frames"] == 1
    # achieved: 2 exact hits, a 0.14 one, over 8 frames with truth or answer (7 present + 1 answered)
    near = 1 / 7
    assert summary["st_iou"] == pytest.approx((2 + near) / 8)
    # oracle: exact on the 5 frames with a hitting candidate, the near box on one, none on "no candidate"
    assert summary["oracle_st_iou"] == pytest.approx((5 + near) / 7)
    assert summary["answer"] == "tracked"
    assert summary["order"] == {"present": list(PRESENT_STAGES), "absent": list(ABSENT_STAGES)}
