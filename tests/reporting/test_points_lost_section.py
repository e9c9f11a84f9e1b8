"""The report's "Where the points are lost" section, from a real points_lost.json."""

from __future__ import annotations

import json

from pipeline.metrics.points_lost import ABSENT_STAGES, PRESENT_STAGES
from pipeline.report import main
from tests.reporting.builders import make_report_root


def _summary(success: int) -> dict:
    present = {s: {"frames": 1, "share": 0.1} for s in PRESENT_STAGES}
    present["success"] = {"frames": success, "share": success / 10}
    return {"answer": "tracked", "frames_with_target": 10, "frames_without_target": 2, "present": present,
            "absent": {s: {"frames": 1, "share": 0.5} for s in ABSENT_STAGES}, "st_iou": 0.4321, "oracle_st_iou": 0.8766,
            "order": {"present": list(PRESENT_STAGES), "absent": list(ABSENT_STAGES)}}


def test_points_lost_section_lists_stages_and_the_oracle(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = make_report_root(tmp_path)
    paths.evaluation.points_lost_summary.write_text(json.dumps(_summary(5)))
    main(paths)
    text = paths.report.read_text()
    section = text[text.index("## Where the points are lost"):text.index("## Figures")]
    assert "| target present: matching error | 1 | 0.100 |" in section
    assert "| target present: success | 5 | 0.500 |" in section
    assert "| target absent: answered | 1 | 0.500 |" in section
    assert "| ST-IoU of the candidate oracle | 0.877 |" in section
    assert "Final answer: tracked" in section
    rows = [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| target")]
    assert rows == [f"| target present: {s}" for s in PRESENT_STAGES] + [f"| target absent: {s}" for s in ABSENT_STAGES]


def test_points_lost_section_says_when_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = make_report_root(tmp_path)
    main(paths)
    assert "No `points_lost.json` yet (made by stage `evaluate`)." in paths.report.read_text()
