"""Reading the report's inputs: the model's metrics are required, the rest optional."""

import pytest

from pipeline.cli import UserError
from pipeline.paths import Paths
from pipeline.reporting.inputs import read_inputs
from tests.reporting.builders import make_report_root


def test_everything_present(tmp_path):
    inputs = read_inputs(make_report_root(tmp_path))
    assert inputs.model.metrics["AP_tiny"] is None and inputs.model.metrics["frames"] == 40
    assert inputs.model.per_object["object_id"].tolist() == ["obj10", "007", "obj2"]  # ids stay text
    assert inputs.baseline is not None and inputs.baseline.metrics["ms_per_frame"] == 88.04
    assert inputs.train_curve is not None and inputs.model.gallery is not None
    assert inputs.notes == {}


def test_optional_inputs_missing_give_notes(tmp_path):
    paths = make_report_root(tmp_path, baseline=False, train_curve=False)
    paths.evaluation.per_size.unlink()
    paths.evaluation.gallery.unlink()
    inputs = read_inputs(paths)
    assert inputs.baseline is None and inputs.train_curve is None and inputs.model.per_size is None
    assert inputs.notes["baseline"] == (
        "No baseline results: `reports/baseline/metrics.json` not found (made by stage `baseline`).")
    assert "`reports/train_curve.csv`" in inputs.notes["train_curve"] and "`train`" in inputs.notes["train_curve"]
    assert "`reports/evaluate/per_size.csv`" in inputs.notes["per_size"]
    assert "`reports/evaluate/gallery.png`" in inputs.notes["gallery"]


def test_missing_model_metrics_is_a_user_error_naming_file_and_stage(tmp_path):
    with pytest.raises(UserError, match=r"reports/evaluate/metrics.json does not exist; it is made by stage evaluate"):
        read_inputs(Paths(tmp_path))


def test_broken_model_metrics_is_a_user_error(tmp_path):
    paths = make_report_root(tmp_path)
    paths.evaluation.metrics.write_text("{broken")
    with pytest.raises(UserError, match=r"reports/evaluate/metrics.json: cannot read metrics"):
        read_inputs(paths)


def test_csv_without_its_columns_is_a_user_error(tmp_path):
    paths = make_report_root(tmp_path)
    paths.evaluation.per_object.write_text("object_id,frames\nobj1,3\n")
    with pytest.raises(UserError, match=r"per_object.csv: missing column\(s\) frames_with_target, success"):
        read_inputs(paths)
