"""The committed run table: exact round trip of a real MLflow store, merging, and the report without a store."""

import shutil

import pandas as pd

from pipeline.report import main
from pipeline.reporting.ablation import ablation_table, fetch_runs
from pipeline.reporting.run_table import kept, merge_runs, read_run_table, write_run_table
from tests.reporting.builders import copy_store, make_report_root

PARAMS = ("model.fusion.type", "model.correlation.kernel", "train.iou_type")


def test_round_trip_is_exact(tmp_path):
    runs = fetch_runs(copy_store(tmp_path / "mlflow.db"))
    assert write_run_table(tmp_path / "runs.csv", runs) == 5
    back = read_run_table(tmp_path / "runs.csv")
    pd.testing.assert_frame_equal(back, kept(runs).reindex(columns=back.columns))
    assert not any(c.startswith("metrics.train_") for c in back.columns)  # only what the ablation reads
    pd.testing.assert_frame_equal(ablation_table(back, PARAMS, "AP50").frame, ablation_table(runs, PARAMS, "AP50").frame)
    lines = (tmp_path / "runs.csv").read_text().splitlines()
    assert lines[0] == "run_id,key,value" and lines[1:] == sorted(lines[1:])  # one line per value, sorted


def test_store_runs_replace_and_extend_the_committed_ones():
    committed = pd.DataFrame({"run_id": ["a", "b"], "params.train.seed": ["0", "1"], "metrics.eval_AP50": [0.1, 0.2]})
    store = pd.DataFrame({"run_id": ["b", "c"], "params.train.seed": ["1", "2"], "metrics.eval_AP50": [0.25, 0.3],
                          "metrics.train_loss": [1.0, 2.0]})
    merged, only_store = merge_runs(committed, store)
    assert merged["run_id"].tolist() == ["a", "b", "c"] and only_store == 1
    assert merged["metrics.eval_AP50"].tolist() == [0.1, 0.25, 0.3]  # the store's b: evaluate may have run since
    assert "metrics.train_loss" not in merged


def test_no_table_is_none(tmp_path):
    assert read_run_table(tmp_path / "runs.csv") is None


def test_report_without_the_store_reads_the_same_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = make_report_root(tmp_path)
    copy_store(paths.mlflow_db)
    main(paths)
    only_store = paths.report.read_text()
    assert "5 runs of the local store are not in `reports/runs.csv` yet" not in only_store  # no table: no claim
    write_run_table(paths.run_table, fetch_runs(f"sqlite:///{paths.mlflow_db}"))
    main(paths)
    with_table = paths.report.read_text()
    assert with_table == only_store
    paths.mlflow_db.unlink()  # a clone: no store
    shutil.rmtree(tmp_path / "mlartifacts", ignore_errors=True)
    main(paths)
    assert paths.report.read_text() == with_table
    assert "| attention | 3 | giou | 0, 1 | 2 | 0.750 ± 0.071 |" in with_table


def test_report_says_which_runs_a_clone_would_miss(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = make_report_root(tmp_path)
    runs = fetch_runs(copy_store(paths.mlflow_db))
    write_run_table(paths.run_table, runs.iloc[:3])
    main(paths)
    assert "2 runs of the local store are not in `reports/runs.csv` yet" in paths.report.read_text()
