"""Number formats, tables and sections of reports/metrics.md."""

import math

import pandas as pd
import pytest

from pipeline.reporting.committed import Base
from pipeline.reporting.comparison import Comparison
from pipeline.reporting.inputs import ReportInputs, Scored
from pipeline.reporting.markdown import (
    diff_section,
    format_mean_std,
    format_metric,
    format_number,
    headline_section,
    lead_section,
    per_object_section,
    per_size_section,
    table,
)
from pipeline.reporting.ordering import natural_key
from tests.reporting.builders import MODEL_METRICS


@pytest.mark.parametrize("value, digits, signed, text", [
    (None, 3, False, "n/a"),
    (math.nan, 3, False, "n/a"),
    (0.12345, 3, False, "0.123"),
    (-0.0001, 3, False, "0.000"),   # no "-0.000"
    (-0.0001, 3, True, "0.000"),
    (0.05, 3, True, "+0.050"),
    (-0.05, 3, True, "-0.050"),
    (12.34, 1, False, "12.3"),
    (40, 3, False, "40"),           # counts stay integers
    (3, 3, True, "+3"),
    (1.0, 3, False, "1.000"),
])
def test_format_number(value, digits, signed, text):
    assert format_number(value, digits, signed) == text


def test_milliseconds_get_one_decimal_everything_else_three():
    assert format_metric("ms_per_frame", 12.345) == "12.3"
    assert format_metric("AP50", 0.7) == "0.700"
    assert format_mean_std("AP50", 0.75, 0.0707, 2) == "0.750 ± 0.071"
    assert format_mean_std("ms_per_frame", 13.0, 1.414, 2) == "13.0 ± 1.4"
    assert format_mean_std("AP50", 0.9, math.nan, 1) == "0.900"


def test_table_right_aligns_numbers_and_escapes_pipes():
    text = table(["name", "value"], [["a|b", "1.000"]], [False, True])
    assert text.splitlines() == ["| name | value |", "|---|---:|", "| a\\|b | 1.000 |"]


def test_natural_order_numbers_by_value_then_words():
    assert sorted(["obj2", "10", "9", "007", "abc"], key=natural_key) == ["007", "9", "10", "abc", "obj2"]
    # digit runs inside ids by value too: sequences 0_s0, 1_s0, ..., 10_s0, not 0, 10, 11, ..., 1
    assert sorted(["10_s0", "1_s0", "0_s0", "2_s1", "2_s0", "obj10", "obj9"], key=natural_key) == [
        "0_s0", "1_s0", "2_s0", "2_s1", "10_s0", "obj9", "obj10"]


def test_headline_without_baseline_says_so():
    inputs = ReportInputs(Scored(MODEL_METRICS), None, None, {"baseline": "No baseline results: X not found."})
    text = headline_section(inputs)
    assert "| metric | model |" in text and "baseline |" not in text
    assert "| ms/frame | 12.3 |" in text and "| F1 | 0.686 |" in text
    assert "\n\nNo baseline results: X not found.\n\nNo real-photo check set was scored" in text


def test_null_metric_is_na():
    inputs = ReportInputs(Scored({**MODEL_METRICS, "AP75": None}), None, None, {"baseline": "-"})
    assert "| AP75 | n/a |" in headline_section(inputs)


def test_diff_section_states():
    source = "reports/evaluate/metrics.json"
    assert "No committed metrics to compare with" in diff_section(Comparison(None), source)
    base = Base("0123456789abcdef", "metrics " + "x" * 100, {})
    empty = pd.DataFrame(columns=["metric", "old", "new", "change"])
    assert "No change beyond round-off against `m.json` at commit `0123456789`" in diff_section(
        Comparison(base, empty), "m.json")
    diff = pd.DataFrame([{"metric": "success", "old": 0.7, "new": 0.75, "change": 0.05},
                         {"metric": "fp_rate", "old": 0.5, "new": 0.2, "change": -0.3},
                         {"metric": "AP_tiny", "old": None, "new": 0.1, "change": None}], dtype=object)
    text = diff_section(Comparison(base, diff, {"success": 0.04, "fp_rate": 0.1}, "paired", 16), "m.json")
    assert "Old: `m.json` at commit `0123456789` (\"metrics xxx" in text and "x…\"), the newest" in text  # subject cut
    assert "paired bootstrap over the 16 objects" in text
    assert "| metric | old | new | change | SE | beyond noise |" in text
    assert "| success | 0.700 | 0.750 | +0.050 | 0.040 | no |" in text
    assert "| fp_rate | 0.500 | 0.200 | -0.300 | 0.100 | yes |" in text
    assert "| AP_tiny | n/a | 0.100 | n/a | n/a | n/a |" in text


def test_lead_names_success_and_false_alarms_with_their_noise():
    inputs = ReportInputs(Scored(MODEL_METRICS), None, None, {}, real=Scored({**MODEL_METRICS, "objects": 12}))
    text = lead_section(inputs, {"success": 0.05, "fp_rate": 0.11}, {"success": 0.07})
    assert "**Top-1 success 0.625 ± 0.050**" in text and "on 20 of the 32 validation frames with the target" in text
    assert "**False-positive rate 0.125 ± 0.110**" in text and "on 1 of the 8 frames where the object is absent" in text
    assert "Real photos: success 0.625 ± 0.070, false-positive rate 0.125." in text
    assert "bootstrap over the 3 validation objects (12 on the real photos)" in text


def test_objects_never_found_are_flagged():
    objects = pd.DataFrame({"object_id": ["10", "2", "1"], "frames": [6, 6, 6], "frames_with_target": [5, 5, 4],
                            "success": [0.0, 1.0, 0.0], "precision": [0.0, 1.0, 0.0], "recall": [0.0, 1.0, 0.0],
                            "f1": [0.0, 1.0, 0.0], "mean_iou": [math.nan, 0.8, math.nan], "fp_rate": [1.0, 0.0, 1.0]})
    text = per_object_section(ReportInputs(Scored(MODEL_METRICS, per_object=objects), None, None, {}))
    assert "**2 of 3 objects are never found**" in text and "marked ⚠: 1, 10." in text
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ") and "object" not in line]
    assert rows == ["| ⚠ 1", "| 2", "| ⚠ 10"]  # natural order


def test_sizes_in_size_order_with_open_upper_bound_and_empty_bins_left_out():
    sizes = pd.DataFrame({"size": ["large", "tiny", "small", "medium"], "min_px": [64, 0, 16, 32],
                          "max_px": [100000, 16, 32, 64], "frames": [5.0, 4.0, 0.0, 0.0],
                          "AP": [0.6, math.nan, math.nan, math.nan], "success": [0.8, 0.0, math.nan, math.nan]})
    inputs = ReportInputs(Scored(MODEL_METRICS, per_size=sizes), None, None, {})
    text = per_size_section(inputs)
    assert text.splitlines()[-2:] == ["| tiny | 0–16 | 4 | n/a | 0.000 |", "| large | ≥ 64 | 5 | 0.600 | 0.800 |"]
    assert "Size bins without frames are left out: small (16–32 px), medium (32–64 px)." in text


def test_ablation_section_marks_differences_against_the_seed_spread():
    from pipeline.reporting.ablation import SHOWN_METRICS, ablation_table
    from pipeline.reporting.markdown import ablation_section
    from tests.reporting.test_ablation import _seed_runs

    runs = _seed_runs({"best": [0.80, 0.82], "far": [0.50, 0.52], "close": [0.76, 0.84], "once": [0.20]})
    text = ablation_section(ablation_table(runs, ("model.fusion.type",), "AP50"), None)
    assert "| model.fusion.type | seeds | n | AP50 |" in text and text.splitlines()[4].endswith("| vs best (AP50) |")
    assert "> std(best row) + std(this row)" in text
    lines = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert lines["best"].endswith("| 0.810 ± 0.014 |" + " n/a |" * (len(SHOWN_METRICS) - 1) + " best |")
    assert "| AP50, real photos | success, real photos | FP rate, real photos |" in text
    assert lines["close"].endswith("| -0.010 (within spread) |")
    assert lines["far"].endswith("| -0.300 (beyond spread) |")
    assert lines["once"].endswith("| -0.610 (1 seed) |")
