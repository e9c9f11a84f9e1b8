"""The figures evaluate adds to the MLflow run are written for any mix of outcomes."""

import pandas as pd
from PIL import Image

from pipeline.engine.run_figures import plot_outcomes, plot_pr_curve


def test_pr_curve_and_outcome_figures(tmp_path):
    pr = pd.DataFrame({"threshold": [0.0, 0.5, 1.0], "precision": [0.5, 0.7, 1.0], "recall": [0.9, 0.6, 0.0]})
    for path in (plot_pr_curve(pr, 0.34, "pr", tmp_path / "pr.png"), plot_pr_curve(pr, None, "pr", tmp_path / "n.png"),
                 plot_outcomes(pd.Series(["TP", "miss", "FN", "FP", "TN"]), "all", tmp_path / "all.png"),
                 plot_outcomes(pd.Series(["TP", "TP"]), "no absent frames", tmp_path / "present.png")):
        assert Image.open(path).size[0] > 300
