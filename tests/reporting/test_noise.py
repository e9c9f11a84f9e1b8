"""Bootstrap over objects: the point estimate is the metrics' own, the SE is seeded and paired."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.reporting.noise import METRICS, beyond_noise, metrics_of, object_sums, standard_errors
from pipeline.tables import read_csv

REPO = Path(__file__).resolve().parents[2]


def _frames(outcomes_by_object: dict[str, list[str]]) -> pd.DataFrame:
    rows = []
    for obj, outcomes in outcomes_by_object.items():
        for i, outcome in enumerate(outcomes):
            present = outcome != "FP" and outcome != "TN"
            rows.append({"object_id": obj, "present": present, "outcome": outcome,
                         "iou": {"TP": 0.8, "miss": 0.1, "FN": 0.6}.get(outcome, np.nan)})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("folder", ["evaluate", "baseline", "realset"])
def test_sums_reproduce_the_committed_metrics(folder):
    """Summed over all objects the bootstrap's metrics are metrics.json's, from the committed files."""
    root = REPO / "reports" / folder
    metrics = json.loads((root / "metrics.json").read_text())
    sums = object_sums(read_csv(root / "frames.csv", ("object_id", "sequence_id")),
                       read_csv(root / "sequences.csv", ("object_id", "sequence_id")), metrics["iou_threshold"])
    point = metrics_of(sums.sums.sum(0))
    for key in METRICS:
        if metrics.get(key) is None:
            assert np.isnan(point[key]), key
        else:
            assert point[key] == pytest.approx(metrics[key], abs=1e-12), key


def test_counts_and_ratios_of_a_small_table():
    frames = _frames({"a": ["TP", "FP", "TN"], "b": ["miss", "FN", "TP"]})
    point = metrics_of(object_sums(frames, None, 0.5).sums.sum(0))
    # present: TP, miss, FN, TP = 4; hits at any score: TP, TP, FN (IoU 0.6) = 3; fired: TP, FP, miss, TP
    assert point["success"] == 0.75 and point["recall"] == 0.5 and point["precision"] == 0.5
    assert point["fp_rate"] == 0.5 and point["mean_iou"] == pytest.approx(0.8) and np.isnan(point["st_iou"])


def test_seeded_and_paired():
    new = object_sums(_frames({o: ["TP", "TP", "FP"] if o < "e" else ["miss", "miss", "TN"] for o in "abcdefgh"}), None, 0.5)
    first, second = standard_errors(new), standard_errors(new)
    assert first == second and first["success"] > 0  # the same numbers every run
    assert standard_errors(new, new)["success"] == 0.0  # paired: a run against itself has no noise
    other = object_sums(_frames({"x": ["TP", "TP"], "y": ["miss", "miss"], "z": ["TP", "miss"]}), None, 0.5)
    assert standard_errors(new, other)["success"] > first["success"]  # two independent draws add up


def test_beyond_noise():
    assert beyond_noise(0.1, 0.04) is True and beyond_noise(-0.05, 0.04) is False
    assert beyond_noise(None, 0.1) is None and beyond_noise(0.1, None) is None
