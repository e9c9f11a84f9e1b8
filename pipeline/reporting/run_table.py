"""The committed run table ``reports/runs.csv``: the MLflow runs behind the report's ablation table.

The MLflow store (``mlflow.db``) is not in git, so a clone has no runs; this table is. It is long
(one line per run and value: ``run_id,key,value``; ``key`` is ``params.<name>`` or
``metrics.<name>``), sorted by run and key, and floats are written exactly (``repr``), so a new run
adds lines, nothing else, and reading it back gives the numbers the store gives. Only what the
ablation table reads is kept: every param, and the metrics of the evaluated sets (``eval_*``,
``real_*``). ``python -m pipeline.export_runs`` writes it; the report merges it with the store.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.io import write_csv

COLUMNS = ["run_id", "key", "value"]
PARAM = "params."
#: Metrics the ablation table reads: the val split (``eval_``) and the real-photo check set (``real_``).
METRIC_PREFIXES = ("metrics.eval_", "metrics.real_")


def empty_runs() -> pd.DataFrame:
    """A run frame without runs, as :func:`pipeline.reporting.ablation.fetch_runs` returns one."""
    return pd.DataFrame({"run_id": pd.Series(dtype=str)})


def kept(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with only the columns the table keeps (run_id, params, evaluated metrics)."""
    columns = [c for c in runs.columns if c == "run_id" or c.startswith(PARAM) or c.startswith(METRIC_PREFIXES)]
    return runs[columns]


def to_long(runs: pd.DataFrame) -> pd.DataFrame:
    """Wide runs (``run_id``, ``params.*``, ``metrics.*``) -> the table's rows; missing values are left out."""
    rows = []
    for record in kept(runs).to_dict("records"):
        run_id = str(record.pop("run_id"))
        for key, value in record.items():
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                continue  # not recorded by this run (a NaN metric counts as not recorded too)
            rows.append((run_id, key, str(value) if key.startswith(PARAM) else repr(float(value))))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["run_id", "key"], kind="stable").reset_index(drop=True)


def from_long(table: pd.DataFrame) -> pd.DataFrame:
    """The table's rows -> wide runs as the store gives them: params as text, metrics as floats,
    one row per run sorted by ``run_id``."""
    if table.empty:
        return empty_runs()
    wide = table.pivot(index="run_id", columns="key", values="value")
    wide = wide.reindex(sorted(wide.columns), axis=1)
    for column in wide.columns:
        if not column.startswith(PARAM):
            wide[column] = pd.to_numeric(wide[column])
    wide.columns.name = None
    return wide.reset_index().sort_values("run_id", kind="stable").reset_index(drop=True)


def read_run_table(path: Path) -> pd.DataFrame | None:
    """The runs of ``path`` (wide, as :func:`from_long`), or None when the file does not exist."""
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return from_long(table[COLUMNS])


def write_run_table(path: Path, runs: pd.DataFrame) -> int:
    """Write ``runs`` (wide) as the table; returns the number of runs written."""
    table = to_long(runs)
    write_csv(path, table)
    return int(table["run_id"].nunique())


def merge_runs(committed: pd.DataFrame | None, store: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The committed runs, with every run of the store added or, for a run in both, replaced by the
    store's (evaluate may have added metrics since); and how many runs only the store holds."""
    store = kept(store)
    if committed is None or committed.empty:
        return store.sort_values("run_id", kind="stable").reset_index(drop=True), len(store)
    only_store = ~store["run_id"].isin(committed["run_id"])
    rest = committed[~committed["run_id"].isin(store["run_id"])]
    merged = pd.concat([rest, store], ignore_index=True) if len(store) else rest
    merged = merged.reindex(sorted(merged.columns, key=lambda c: (c != "run_id", c)), axis=1)
    return merged.sort_values("run_id", kind="stable").reset_index(drop=True), int(only_store.sum())
