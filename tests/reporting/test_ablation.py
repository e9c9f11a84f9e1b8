"""The ablation table from a real MLflow SQLite store (no mocks)."""

import math

import pandas as pd
import pytest

from pipeline.reporting.ablation import ablation_table, fetch_runs, load_ablation, local_store_path
from tests.reporting.builders import copy_store

PARAMS = ("model.fusion.type", "model.correlation.kernel", "train.iou_type")


@pytest.fixture
def store(tmp_path):
    return copy_store(tmp_path / "mlflow.db")


def test_fetch_runs_reads_params_and_eval_metrics(store):
    runs = fetch_runs(store)
    assert len(runs) == 5
    assert set(runs["params.model.fusion.type"]) == {"attention", "average"}
    assert runs["metrics.eval_AP50"].notna().sum() == 4


def test_seeds_of_one_setting_become_mean_and_std(store):
    table = ablation_table(fetch_runs(store), PARAMS, "AP50")
    frame = table.frame
    assert table.skipped == 1  # the run without evaluate metrics
    assert frame[list(PARAMS)].values.tolist() == [
        ["attention", "1", "ciou"], ["attention", "3", "giou"], ["average", "3", "giou"]]  # by AP50, best first
    two = frame.iloc[1]
    assert two["n"] == 2 and two["seeds"] == "0, 1"
    assert two["AP50"] == pytest.approx(0.75) and two["AP50_std"] == pytest.approx(math.sqrt(0.005))
    assert two["ms_per_frame"] == pytest.approx(13.0)
    assert frame.iloc[0]["n"] == 1 and math.isnan(frame.iloc[0]["AP50_std"])
    assert table.metrics == ("AP50", "success", "f1", "fp_rate", "mean_iou", "st_iou", "ece", "ms_per_frame",
                             "real_AP50", "real_success", "real_fp_rate", "real_ece")


def test_sort_metric_not_shown_is_added_first(store):
    table = ablation_table(fetch_runs(store), PARAMS, "AP")
    assert table.metrics[0] == "AP"
    assert table.frame["AP"].round(6).tolist() == [0.42, 0.42, 0.30]  # tie (0.42 both) broken by param values
    assert table.frame["model.correlation.kernel"].tolist() == ["1", "3", "3"]


def test_ties_sorted_by_param_values_numbers_by_value():
    runs = pd.DataFrame({
        "run_id": ["a", "b", "c"], "params.model.correlation.kernel": ["9", "10", None],
        "metrics.eval_AP50": [0.5, 0.5, 0.5],
    })
    table = ablation_table(runs, ("model.correlation.kernel",), "AP50")
    assert table.frame["model.correlation.kernel"].tolist() == ["9", "10"]
    assert table.frame["seeds"].tolist() == ["n/a"] * 2
    assert table.unrecorded == 1  # run c predates the param: it has no row to go in


def test_runs_that_do_not_record_a_param_under_study_are_left_out():
    runs = pd.DataFrame({
        "run_id": ["a", "b"], "params.model.correlation.kernel": ["1", "3"],
        "params.model.refine.type": ["roi", None], "metrics.eval_AP50": [0.5, 0.6],
    })
    table = ablation_table(runs, ("model.correlation.kernel", "model.refine.type"), "AP50")
    assert table.frame["model.refine.type"].tolist() == ["roi"] and table.unrecorded == 1
    empty = ablation_table(runs, ("model.head.type",), "AP50")
    assert empty.frame.empty and empty.unrecorded == 2


def test_missing_sqlite_store_is_not_created(tmp_path):
    db = tmp_path / "mlflow.db"
    table, note = load_ablation(f"sqlite:///{db}", PARAMS, "AP50")
    assert table is None and note == "No MLflow runs yet."
    assert not db.exists()


def test_unreadable_store_is_a_note_not_a_crash(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not a database" * 100)
    table, note = load_ablation(f"sqlite:///{db}", PARAMS, "AP50")
    assert table is None and note.startswith("MLflow store unreachable (")
    assert str(tmp_path) not in note  # no machine-specific path in the committed report


def test_unreachable_server_is_a_note(monkeypatch):
    table, note = load_ablation("http://127.0.0.1:9", PARAMS, "AP50")
    assert table is None and note.startswith("MLflow store unreachable")


def test_local_store_paths():
    assert str(local_store_path("sqlite:////abs/mlflow.db")) == "/abs/mlflow.db"
    assert str(local_store_path("sqlite:///rel.db")) == "rel.db"
    assert local_store_path("sqlite://") is None
    assert str(local_store_path("file:///abs/mlruns")) == "/abs/mlruns"
    assert local_store_path("http://host:5000") is None


def _seed_runs(settings: dict[str, list[float]]) -> pd.DataFrame:
    """One run per (fusion value, seed) with the given eval_AP50 per seed."""
    rows = [{"run_id": f"{name}-{seed}", "params.model.fusion.type": name, "params.train.seed": str(seed),
             "metrics.eval_AP50": value} for name, values in settings.items() for seed, value in enumerate(values)]
    return pd.DataFrame(rows)


def test_differences_beyond_the_seed_spread_are_marked_against_the_best_row():
    runs = _seed_runs({
        "best": [0.80, 0.82],        # mean 0.81, std 0.0141
        "far": [0.50, 0.52],         # 0.30 below: far beyond 0.0141 + 0.0141
        "close": [0.76, 0.84],       # mean 0.80, std 0.0566: 0.01 below, within the spread
        "edge": [0.76, 0.76],        # 0.05 below, std 0: beyond 0.0141 + 0
        "once": [0.20],              # a single seed: no spread to compare with
    })
    frame = ablation_table(runs, ("model.fusion.type",), "AP50").frame.set_index("model.fusion.type")
    assert list(frame.index) == ["best", "close", "edge", "far", "once"]
    assert frame.loc["far", "vs_best"] == pytest.approx(-0.30)
    assert frame["beyond_spread"].to_dict() == {"best": None, "close": False, "edge": True, "far": True, "once": None}


def test_beyond_spread_rule():
    from pipeline.reporting.ablation import beyond_spread

    assert beyond_spread((0.8, 0.05), (0.6, 0.05)) is True    # 0.2 > 0.1
    assert beyond_spread((0.8, 0.05), (0.72, 0.05)) is False  # 0.08 < 0.1
    assert beyond_spread((0.8, 0.05), (0.9, 0.01)) is True    # either direction
    assert beyond_spread((0.8, float("nan")), (0.1, 0.0)) is None


def test_runs_differing_outside_the_study_are_separate_rows_not_seeds():
    runs = pd.DataFrame({
        "run_id": ["a", "b", "c", "d"],
        "params.model.fusion.type": ["attention"] * 4,
        "params.model.correlation.kernel": ["1"] * 4,
        "params.train.iou_type": ["giou"] * 4,
        "params.train.seed": ["0", "1", "0", "0"],
        "params.model.match_gate": ["sum", "sum", "and", "and"],
        "params.train.identity_aug": ["0.0", "0.0", "0.0", "0.5"],
        "metrics.eval_AP50": [0.6, 0.7, 0.8, 0.5],
    })
    table = ablation_table(runs, PARAMS, "AP50")
    assert table.other_params == ("model.match_gate", "train.identity_aug")
    frame = table.frame
    assert frame["other"].tolist() == [
        "model.match_gate=and; train.identity_aug=0.0",
        "model.match_gate=sum; train.identity_aug=0.0",
        "model.match_gate=and; train.identity_aug=0.5",
    ]
    assert frame["n"].tolist() == [1, 2, 1] and frame.iloc[1]["seeds"] == "0, 1"
    assert frame.iloc[1]["AP50"] == pytest.approx(0.65)


def test_no_other_column_when_only_the_study_params_differ(store):
    table = ablation_table(fetch_runs(store), PARAMS, "AP50")
    assert table.other_params == () and set(table.frame["other"]) == {""}


def test_real_photo_metrics_are_read_from_their_own_mlflow_keys():
    runs = pd.DataFrame({
        "run_id": ["a", "b"], "params.model.fusion.type": ["attention", "average"],
        "metrics.eval_AP50": [0.9, 0.8], "metrics.real_AP50": [0.4, float("nan")],
        "metrics.eval_real_AP50": [0.0, 0.0],  # never read: real_* has no eval_ prefix
    })
    table = ablation_table(runs, ("model.fusion.type",), "AP50")
    assert table.frame["real_AP50"].tolist()[0] == pytest.approx(0.4)
    assert math.isnan(table.frame["real_AP50"].tolist()[1])  # a run scored before the set existed


def test_report_settings_never_split_a_row_and_real_photos_can_sort_it():
    runs = pd.DataFrame({
        "run_id": ["a", "b", "c"], "params.model.fusion.type": ["attention"] * 3,
        "params.train.seed": ["0", "1", "0"], "params.report.sort_by": ["AP50", "real_AP50", "AP50"],
        "params.model.colour_bins": ["8", "8", "0"],
        "metrics.eval_AP50": [0.7, 0.8, 0.9], "metrics.real_AP50": [0.6, 0.5, 0.4],
    })
    table = ablation_table(runs, ("model.fusion.type",), "real_AP50")
    assert table.other_params == ("model.colour_bins",)
    assert table.frame["other"].tolist() == ["model.colour_bins=8", "model.colour_bins=0"]  # best real AP50 first
    assert table.frame["n"].tolist() == [2, 1] and table.frame.iloc[0]["real_AP50"] == pytest.approx(0.55)


def test_keys_of_a_part_whose_type_is_studied_are_not_other_params():
    runs = pd.DataFrame({
        "run_id": ["a", "b", "c"], "params.model.refine.type": ["none", "roi", "roi"],
        "params.model.refine.top_k": [None, "8", "4"], "params.model.refine.pool": [None, "7", "7"],
        "metrics.eval_AP50": [0.5, 0.6, 0.7],
    })
    table = ablation_table(runs, ("model.refine.type",), "AP50")
    # pool has one value per type (n/a without a verifier): implied; top_k differs among roi runs
    assert table.other_params == ("model.refine.top_k",)
