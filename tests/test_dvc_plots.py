"""`dvc plots show --json` on a real tiny training: validation is plotted at validated epochs only."""

from __future__ import annotations

import json
import re
import sys

import pytest

from pipeline.render_plots import render, series
from tests.pipeline_repo import dvc, make_pipeline_repo, run

pytestmark = pytest.mark.slow


def test_validation_series_has_no_fake_zeros(tmp_path):
    # 3 epochs, validation every 2nd: epochs 1 and 2 (the last) validate, epoch 0 does not
    root = make_pipeline_repo(tmp_path / "repo", {"train": {"epochs": 3, "val_every": 2}})
    dvc(root, "repro", "resize_templates")
    run([sys.executable, "-m", "pipeline.train"], root)
    plots = json.loads(dvc(root, "plots", "show", "--json").stdout)

    data = plots["data"]
    (validation,) = data["Validation on unseen objects (validated epochs only)"]
    rows = validation["content"]["data"]["values"]
    assert rows and all(r["dvc_inferred_y_value"] not in ("", None) for r in rows)  # no empty cell to draw as 0
    x, y, lines = series(validation["content"])
    assert x == "epoch" and set(lines) == {"val_AP50", "val_AP", "val_success", "val_fp_rate"}
    for label, points in lines.items():
        assert [e for e, _ in points] == [1.0, 2.0], label
        assert all(0.0 <= v <= 1.0 for _, v in points), label
    (loss,) = data["Training loss"]
    assert [e for e, _ in series(loss["content"])[2]["train_loss"]] == [0.0, 1.0, 2.0]

    page = render(plots, root)
    assert "Validation on unseen objects" in page and "data:image/png;base64," in page
    assert "<script" not in page and not re.search(r"""(src|href)=['"]?https?:""", page)  # viewable offline
