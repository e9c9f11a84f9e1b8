"""Ablation table: every MLflow run of this repository, grouped by the params under study.

Train runs carry their params under flattened keys (``model.fusion``, ``train.seed``; values are
text) and the evaluate stage adds ``eval_<metric>`` to the same run. Runs of one setting that
differ only in their seed become one row, ``mean ± std`` over them.

Each row is compared with the best one on the sort metric: the difference of their means counts
as larger than the seed-to-seed spread when ``|mean_best - mean_row| > std_best + std_row``
(sample stds over seeds; :func:`beyond_spread`). With one run in either row there is no spread to
compare with, and the table says so instead of guessing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from pipeline.reporting.ordering import natural_key
from pipeline.reporting.run_table import empty_runs, merge_runs, read_run_table

log = logging.getLogger(__name__)

SEED_PARAM = "train.seed"
#: Params that cannot change a run's metrics: a report setting never splits a row.
IGNORED_PREFIXES = ("report.",)
#: Metrics of the demo val split (MLflow ``eval_<key>``), then of the real-photo check set
#: (``real_<key>``: logged where the set was scored, n/a elsewhere).
SHOWN_METRICS = ("AP50", "success", "f1", "fp_rate", "mean_iou", "st_iou", "ece", "ms_per_frame",
                 "real_AP50", "real_success", "real_fp_rate", "real_ece")
EVAL_PREFIX = "metrics.eval_"
MISSING = "n/a"
SORT_DECIMALS = 3  # the report shows metrics with 3 decimals


class StoreUnavailable(Exception):
    """The MLflow store could not be read (server down, locked or foreign database, ...)."""


@dataclass(frozen=True)
class AblationTable:
    """One row per setting: the params, ``other`` (the other params that differ between the runs,
    ``key=value; ...``, empty when none do), ``seeds``, ``n`` (runs), ``<metric>`` and ``<metric>_std``,
    then ``vs_best`` (mean of ``sort_by`` minus the best row's) and ``beyond_spread`` (True / False,
    None where either row has a single run, or for the best row itself)."""

    frame: pd.DataFrame
    params: tuple[str, ...]
    metrics: tuple[str, ...]
    sort_by: str
    skipped: int  # runs without evaluate metrics
    other_params: tuple[str, ...] = ()  # params outside ``params`` (and the seed) that differ between runs
    unrecorded: int = 0  # evaluated runs that do not record every param under study (older code)
    store_only: int = 0  # runs of the local MLflow store not (yet) in the committed run table


def local_store_path(tracking_uri: str) -> Path | None:
    """The file or folder a local store lives in (``sqlite:///``, ``file:``, a bare path); None for servers."""
    if tracking_uri.startswith("sqlite://"):
        rest = tracking_uri[len("sqlite://"):].split("?", 1)[0]
        # sqlite:///rel.db is relative, sqlite:////abs.db absolute; sqlite:// alone is in memory
        return Path(rest[1:]) if rest.startswith("/") and len(rest) > 1 else None
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if parsed.scheme == "":
        return Path(tracking_uri)
    return None


def fetch_runs(tracking_uri: str) -> pd.DataFrame:
    """All active runs of all active experiments, one row each, columns as ``mlflow.search_runs`` names
    them: ``run_id``, ``params.<key>``, ``metrics.<key>``. Empty when the local store does not exist
    (reading must not create one). Raises :class:`StoreUnavailable` when the store cannot be read.
    """
    local = local_store_path(tracking_uri)
    if local is not None and not local.exists():
        return empty_runs()
    # Fail fast against an unreachable server instead of MLflow's long retry loop (as the Tracker does).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    try:
        from mlflow.entities import ViewType
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri)
        experiment_ids: list[str] = []
        token = None
        while True:
            page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            experiment_ids += [e.experiment_id for e in page]
            token = page.token
            if not token:
                break
        records = []
        token = None
        while experiment_ids:
            page = client.search_runs(experiment_ids, run_view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                      page_token=token)
            for run in page:
                records.append({"run_id": run.info.run_id,
                                **{f"params.{k}": v for k, v in run.data.params.items()},
                                **{f"metrics.{k}": v for k, v in run.data.metrics.items()}})
            token = page.token
            if not token:
                break
    except Exception as exc:  # any store failure: the report says so and goes on
        raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
    frame = pd.DataFrame.from_records(records) if records else empty_runs()
    return frame.sort_values("run_id", kind="stable").reset_index(drop=True)


def _param_values(runs: pd.DataFrame, key: str) -> pd.Series:
    column = f"params.{key}"
    if column not in runs:
        return pd.Series(MISSING, index=runs.index, dtype=object)
    return runs[column].astype(object).where(runs[column].notna(), MISSING).astype(str)


def _set_by_part_type(runs: pd.DataFrame, key: str, params: tuple[str, ...]) -> bool:
    """Whether ``key`` is a key of a part whose ``type`` is under study (``model.refine.top_k``
    with ``model.refine.type``) and has one value per type: it then says nothing the type column
    does not (a key of another type is n/a), and is no separate setting."""
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        type_key = ".".join(parts[:end]) + ".type"
        if type_key in params:
            values = _param_values(runs, key)
            return bool((values.groupby(_param_values(runs, type_key)).nunique() <= 1).all())
    return False


def _mean_std(values: pd.Series) -> tuple[float, float]:
    # sorted first: a float sum's last digit must not depend on the order the store returned runs in
    clean = values.dropna().sort_values(kind="stable").reset_index(drop=True)
    if clean.empty:
        return float("nan"), float("nan")
    std = float(clean.std(ddof=1)) if len(clean) > 1 else float("nan")  # sample std over seeds
    return float(clean.mean()), std


def beyond_spread(best: tuple[float, float], other: tuple[float, float]) -> bool | None:
    """Whether two settings' ``(mean, std)`` differ by more than their seed-to-seed spread:
    ``|mean_a - mean_b| > std_a + std_b``. None when a std is undefined (a single run) or a mean is."""
    (m1, s1), (m2, s2) = best, other
    if any(math.isnan(v) for v in (m1, s1, m2, s2)):
        return None
    return abs(m1 - m2) > s1 + s2


def ablation_table(runs: pd.DataFrame, params: tuple[str, ...], sort_by: str) -> AblationTable:
    """Group runs with evaluate metrics by ``params``; mean and sample std of each metric over the group.

    A run that does not record one of ``params`` was made by code older than that param and
    cannot be placed in a row; it is left out and counted (``unrecorded``). Rows are sorted by
    ``sort_by`` (best first, undefined last), ties by the param values.
    """
    metrics = SHOWN_METRICS if sort_by in SHOWN_METRICS else (sort_by, *SHOWN_METRICS)
    eval_cols = [c for c in runs.columns if c.startswith(EVAL_PREFIX)]
    evaluated = runs[runs[eval_cols].notna().any(axis=1)] if eval_cols else runs.iloc[0:0]
    skipped = len(runs) - len(evaluated)
    recorded = pd.Series(True, index=evaluated.index)
    for p in params:
        recorded &= _param_values(evaluated, p) != MISSING
    unrecorded = int((~recorded).sum())
    evaluated = evaluated[recorded]

    # Runs that differ in a param outside the study are different settings, not seeds of one.
    other_params = tuple(sorted(
        (key for key in (c[len("params."):] for c in evaluated.columns if c.startswith("params."))
         if key not in params and key != SEED_PARAM and not key.startswith(IGNORED_PREFIXES)
         and _param_values(evaluated, key).nunique() > 1 and not _set_by_part_type(evaluated, key, params)),
        key=natural_key))
    keys = pd.DataFrame({p: _param_values(evaluated, p) for p in params}, index=evaluated.index)
    keys["other"] = ["; ".join(f"{k}={v}" for k, v in zip(other_params, values))
                     for values in zip(*(_param_values(evaluated, k) for k in other_params))] if other_params else ""
    seeds = _param_values(evaluated, SEED_PARAM)
    rows = []
    for setting, group in keys.groupby([*params, "other"], sort=False, dropna=False):
        setting = setting if isinstance(setting, tuple) else (setting,)
        members = evaluated.loc[group.index]
        row: dict = dict(zip([*params, "other"], setting))
        row["seeds"] = ", ".join(sorted(set(seeds.loc[group.index]), key=natural_key))
        row["n"] = len(members)
        for m in metrics:
            column = f"metrics.{m}" if m.startswith("real_") else f"{EVAL_PREFIX}{m}"
            values = members[column] if column in members else pd.Series(dtype=float)
            row[m], row[f"{m}_std"] = _mean_std(pd.to_numeric(values, errors="coerce"))
        rows.append(row)

    def order(row: dict) -> tuple:
        value = row[sort_by]
        undefined = math.isnan(value)
        # rounded as the report shows it: settings that look tied are ordered by their params,
        # not by float noise (0.40 and 0.44 average to 0.42000000000000004)
        shown = 0.0 if undefined else round(value, SORT_DECIMALS)
        return (undefined, -shown, *(natural_key(row[p]) for p in params), natural_key(row["other"]))

    rows.sort(key=order)
    for i, row in enumerate(rows):
        best = rows[0]
        row["vs_best"] = row[sort_by] - best[sort_by]
        row["beyond_spread"] = None if i == 0 else beyond_spread(
            (best[sort_by], best[f"{sort_by}_std"]), (row[sort_by], row[f"{sort_by}_std"]))
    columns = [*params, "other", "seeds", "n", *(c for m in metrics for c in (m, f"{m}_std")), "vs_best", "beyond_spread"]
    return AblationTable(pd.DataFrame(rows, columns=columns), tuple(params), tuple(metrics), sort_by, skipped,
                         other_params, unrecorded)


def load_ablation(
    tracking_uri: str, params: tuple[str, ...], sort_by: str, run_table: Path | None = None
) -> tuple[AblationTable | None, str | None]:
    """The ablation table over the committed run table (``run_table``, :mod:`run_table`) merged with
    the MLflow store, or None and the line the report shows instead (no runs, store unreachable).
    An unreachable store is a line only when there is no run table either."""
    committed = read_run_table(run_table) if run_table is not None else None
    try:
        store = fetch_runs(tracking_uri)
    except StoreUnavailable as exc:
        log.warning("MLflow store %s unreachable (%s); the ablation table has only the committed runs",
                    tracking_uri, exc)
        if committed is None:
            # the exception type only: the URI or message may hold machine-specific paths
            kind = str(exc).split(":", 1)[0]
            return None, f"MLflow store unreachable ({kind}); no ablation table. See the stage's log for details."
        store = empty_runs()
    runs, store_only = merge_runs(committed, store)
    if runs.empty:
        return None, "No MLflow runs yet."
    table = ablation_table(runs, params, sort_by)
    table = dataclasses.replace(table, store_only=store_only if committed is not None else 0)
    if table.frame.empty:
        if table.unrecorded:
            return None, (f"No MLflow run records every param under study ({', '.join(params)}); "
                          f"{table.unrecorded} evaluated run{'s' if table.unrecorded != 1 else ''} from older code.")
        return None, f"No MLflow runs with evaluate metrics yet ({table.skipped} without)."
    return table, None
