"""Write the MLflow runs to the committed run table ``reports/runs.csv`` (``python -m pipeline.export_runs``).

The report's ablation table reads this table merged with the MLflow store, so that a clone, which
has no ``mlflow.db``, shows the same runs: export after new experiments, then run the report and
commit both. Runs already in the table but not in the store (exported from another machine) are
kept; ``--replace`` writes the store's runs only. The store is ``MLFLOW_TRACKING_URI`` if set, else
``mlflow.db`` at the repository root.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pipeline.cli import UserError, run_stage
from pipeline.engine.tracking import default_tracking_uri
from pipeline.paths import Paths
from pipeline.reporting.ablation import StoreUnavailable, fetch_runs
from pipeline.reporting.run_table import merge_runs, read_run_table, write_run_table


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="python -m pipeline.export_runs", description=summary, epilog=details,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="the run table (default: reports/runs.csv)")
    parser.add_argument("--replace", action="store_true", help="drop the table's runs that the store does not hold")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, paths: Paths | None = None) -> None:
    args = parse_args(argv)
    paths = paths or Paths()
    out = args.out or paths.run_table
    uri = default_tracking_uri(paths.root)
    try:
        store = fetch_runs(uri)
    except StoreUnavailable as exc:
        raise UserError(f"MLflow store {uri} cannot be read ({exc})") from None
    try:
        committed = None if args.replace else read_run_table(out)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    runs, new = merge_runs(committed, store)
    written = write_run_table(out, runs)
    print(f"{written} runs ({new} new from the store) -> {out}")


if __name__ == "__main__":
    run_stage(main)
