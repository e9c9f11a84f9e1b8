"""The report's ST-IoU: headline rows and the per-sequence table, read from real files."""

from __future__ import annotations

from pipeline.report import main
from tests.reporting.builders import MODEL_METRICS, make_report_root, write_scored


def test_st_iou_headline_and_per_sequence_table(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = make_report_root(tmp_path)
    write_scored(paths.evaluation, {**MODEL_METRICS, "st_iou": 0.4567, "st_iou_temporal": 0.51234,
                                         "st_iou_tracked": 0.6012, "sequences": 3})
    main(paths)
    text = paths.report.read_text()
    assert "| ST-IoU | 0.457 | n/a |" in text  # the baseline's metrics have none
    assert "| ST-IoU (smoothed) | 0.512 | n/a |" in text
    assert "| ST-IoU (tracked) | 0.601 | n/a |" in text
    section = text[text.index("## Per sequence (ST-IoU)"):text.index("## Figures")]
    # natural order of sequence ids, model / baseline (baseline tables are scaled by 0.5)
    rows = [line for line in section.splitlines() if line.startswith("| ") and "sequence" not in line]
    assert rows == [
        "| 007_s0 | 007 | 13 | 11 | 0.500 / 0.250 | n/a / n/a | 0.580 / 0.290 |",
        "| obj10_s0 | obj10 | 7 | 6 | 0.600 / 0.300 | 0.650 / 0.325 | n/a / n/a |",
        "| obj10_s1 | obj10 | 7 | 5 | 0.400 / 0.200 | 0.450 / 0.225 | 0.550 / 0.275 |",
    ]


def test_missing_sequences_file_is_a_line(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = make_report_root(tmp_path)
    paths.evaluation.sequences.unlink()
    main(paths)
    text = paths.report.read_text()
    assert "No per-sequence results: `reports/evaluate/sequences.csv` not found (made by stage `evaluate`)." in text
