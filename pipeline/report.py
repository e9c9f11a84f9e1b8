"""Stage ``report``: reports/metrics.md and reports/figures/ for review (``python -m pipeline.report``).

Both are committed to git and deterministic (no timestamps, fixed number formats, reproducible
PNGs), so a diff shows only real changes. Sections: model vs baseline, change against the metrics
committed at HEAD, the MLflow ablation table, per-object and per-size results, figures.
Reads ``reports/evaluate/``, ``reports/realset/``, ``reports/baseline/``,
``reports/train_curve.csv``, params.yaml's ``report`` section and the MLflow runs (``mlflow.db``);
writes only ``reports/metrics.md`` and ``reports/figures/``.
"""

from __future__ import annotations

import os

from pipeline.cli import run_stage
from pipeline.config import load_params
from pipeline.engine.tracking import default_tracking_uri
from pipeline.io import atomic_dir, write_text
from pipeline.paths import Paths
from pipeline.reporting.ablation import load_ablation
from pipeline.reporting.committed import metrics_diff, read_committed
from pipeline.reporting.figures import write_figures
from pipeline.reporting.inputs import display_path, read_inputs
from pipeline.reporting.markdown import HEADLINE, render_report


def main(paths: Paths | None = None) -> None:
    paths = paths or Paths()
    params = load_params(paths.params)
    inputs = read_inputs(paths)

    committed = read_committed(paths.root, paths.evaluation.metrics)
    diff = None if committed is None else metrics_diff(committed, inputs.model.metrics, order=list(HEADLINE))
    ablation, ablation_note = load_ablation(
        default_tracking_uri(paths.root), params.report.ablation_params, params.report.sort_by, paths.run_table
    )

    # the folder is replaced whole, so a figure whose input went away does not linger
    with atomic_dir(paths.figures) as folder:
        figures = write_figures(inputs, folder)
    text = render_report(
        inputs, diff, display_path(paths.evaluation.metrics, paths.root), ablation, ablation_note, figures,
        figures_link=os.path.relpath(paths.figures, paths.report.parent).replace(os.sep, "/"),
    )
    write_text(paths.report, text)


if __name__ == "__main__":
    run_stage(main, __doc__)
