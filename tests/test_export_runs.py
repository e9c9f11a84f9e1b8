"""``python -m pipeline.export_runs``: the MLflow store into the committed run table, on a real SQLite store."""

import pandas as pd
import pytest

from pipeline.cli import UserError
from pipeline.export_runs import main
from pipeline.paths import Paths
from pipeline.reporting.run_table import read_run_table, write_run_table
from tests.reporting.builders import copy_store


def test_export_keeps_runs_from_elsewhere_unless_replaced(tmp_path, monkeypatch, capsys):
    paths = Paths(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", copy_store(tmp_path / "store" / "mlflow.db"))
    main([], paths)
    assert "5 runs (5 new from the store) -> " in capsys.readouterr().out
    table = read_run_table(paths.run_table)
    assert len(table) == 5 and table["params.train.seed"].notna().all()

    other = table.iloc[:1].assign(run_id="zz-from-another-machine")
    write_run_table(paths.run_table, pd.concat([table, other]))
    main([], paths)
    assert "6 runs (0 new from the store)" in capsys.readouterr().out
    main(["--replace"], paths)
    assert "5 runs (5 new from the store)" in capsys.readouterr().out
    assert "zz-from-another-machine" not in paths.run_table.read_text()


def test_unreadable_store_is_a_user_error(tmp_path, monkeypatch):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database" * 100)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    with pytest.raises(UserError, match="cannot be read"):
        main([], Paths(tmp_path))
