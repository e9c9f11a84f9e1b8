"""Stage ``report``: reports/metrics.md and reports/figures/ for review (``python -m pipeline.report``).

Both are committed to git and deterministic (no timestamps, fixed number formats, reproducible
PNGs, seeded bootstrap), so a diff shows only real changes and a clone regenerates them byte for
byte. Sections: top-1 success and false alarms, model vs baseline, change against the previous
committed metrics (its commit named, with bootstrap noise), the ablation table, per-object,
per-size and per-sequence results, figures.
Reads ``reports/evaluate/``, ``reports/realset/``, ``reports/baseline/``,
``reports/train_curve.csv``, ``reports/runs.csv`` (the committed MLflow runs) merged with the
MLflow store when there is one (``MLFLOW_TRACKING_URI``, else ``mlflow.db``), params.yaml's
``report`` section and git history; writes only ``reports/metrics.md`` and ``reports/figures/``.
"""

from __future__ import annotations

import os

from pipeline.cli import run_stage
from pipeline.config import load_params
from pipeline.engine.tracking import default_tracking_uri
from pipeline.io import atomic_dir, write_text
from pipeline.paths import Paths
from pipeline.reporting.ablation import load_ablation
from pipeline.reporting.comparison import compare, scored_sums
from pipeline.reporting.figures import write_figures
from pipeline.reporting.inputs import display_path, read_inputs
from pipeline.reporting.markdown import HEADLINE, render_report
from pipeline.reporting.noise import standard_errors


def main(paths: Paths | None = None) -> None:
    paths = paths or Paths()
    params = load_params(paths.params)
    inputs = read_inputs(paths)

    comparison = compare(paths.root, paths.evaluation, inputs.model, order=list(HEADLINE))
    model_sums = scored_sums(inputs.model)
    noise = standard_errors(model_sums) if model_sums is not None else {}
    real_sums = scored_sums(inputs.real) if inputs.real is not None else None
    real_noise = standard_errors(real_sums) if real_sums is not None else {}
    ablation, ablation_note = load_ablation(
        default_tracking_uri(paths.root), params.report.ablation_params, params.report.sort_by, paths.run_table
    )

    # the folder is replaced whole, so a figure whose input went away does not linger
    with atomic_dir(paths.figures) as folder:
        figures = write_figures(inputs, folder)
    text = render_report(
        inputs, comparison, display_path(paths.evaluation.metrics, paths.root), ablation, ablation_note, figures,
        figures_link=os.path.relpath(paths.figures, paths.report.parent).replace(os.sep, "/"),
        noise=noise, real_noise=real_noise,
    )
    write_text(paths.report, text)


if __name__ == "__main__":
    run_stage(main, __doc__)
