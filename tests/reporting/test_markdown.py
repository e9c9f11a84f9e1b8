"""Number formats, tables and sections of reports/metrics.md."""

import math

import pandas as pd
import pytest

from pipeline.reporting.inputs import ReportInputs, Scored
from pipeline.reporting.markdown import (
    diff_section,
    format_mean_std,
    format_metric,
    format_number,
    headline_section,
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
    assert "No committed metrics to compare with" in diff_section(None, "reports/evaluate/metrics.json")
    empty = pd.DataFrame(columns=["metric", "old", "new", "change"])
    assert "No change against `m.json`" in diff_section(empty, "m.json")
    diff = pd.DataFrame([{"metric": "AP50", "old": 0.7, "new": 0.75, "change": 0.05},
                         {"metric": "AP_tiny", "old": None, "new": 0.1, "change": None}], dtype=object)
    text = diff_section(diff, "m.json")
    assert "| AP50 | 0.700 | 0.750 | +0.050 |" in text
    assert "| AP_tiny | n/a | 0.100 | n/a |" in text


def test_sizes_in_size_order_with_open_upper_bound():
    sizes = pd.DataFrame({"size": ["large", "tiny"], "min_px": [96, 0], "max_px": [math.inf, 16], "frames": [5.0, 4.0],
                          "AP": [0.6, math.nan], "success": [0.8, 0.0]})
    inputs = ReportInputs(Scored(MODEL_METRICS, per_size=sizes), None, None, {})
    lines = per_size_section(inputs).splitlines()
    assert lines[-2:] == ["| tiny | 0–16 | 4 | n/a | 0.000 |", "| large | ≥ 96 | 5 | 0.600 | 0.800 |"]


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
