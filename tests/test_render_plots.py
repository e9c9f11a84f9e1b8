"""The offline renderer of `dvc plots show --json`: series from DVC's vega specs, empty cells left out."""

from __future__ import annotations

import json

from pipeline.render_plots import main, render, series


def _spec(rows):
    return {"data": {"values": rows}, "encoding": {"x": {"field": "epoch", "type": "quantitative"}},
            "layer": [{"encoding": {"y": {"field": "dvc_inferred_y_value", "type": "quantitative"}}}]}


def test_series_per_field_and_empty_cells_left_out():
    rows = [{"epoch": "0", "dvc_inferred_y_value": "", "rev": "workspace", "field": "val_AP50"},
            {"epoch": "1", "dvc_inferred_y_value": "0.5", "rev": "workspace", "field": "val_AP50"},
            {"epoch": "1", "dvc_inferred_y_value": "0.9", "rev": "workspace", "field": "val_fp_rate"},
            {"epoch": "0", "dvc_inferred_y_value": "0.8", "rev": "workspace", "field": "val_fp_rate"}]
    x, y, lines = series(_spec(rows))
    assert (x, y) == ("epoch", "dvc_inferred_y_value")
    assert lines == {"val_AP50": [(1.0, 0.5)], "val_fp_rate": [(0.0, 0.8), (1.0, 0.9)]}


def test_page_inlines_plots_and_images(tmp_path):
    image = tmp_path / "fig.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    plots = {"data": {"loss": [{"type": "vega", "revisions": ["workspace"],
                                "content": _spec([{"epoch": "0", "dvc_inferred_y_value": "1.0", "rev": "workspace",
                                                   "field": "train_loss"}])}],
                      "reports/figures/fig.png": [{"type": "image", "revisions": ["workspace"], "url": str(image)}]}}
    page = render(plots, tmp_path)
    assert page.count("<figure>") == 2 and "<script" not in page
    source = tmp_path / "plots.json"
    source.write_text(json.dumps(plots))
    main([str(source), "--out", str(tmp_path / "out" / "offline.html")])
    assert (tmp_path / "out" / "offline.html").read_text() == page
