"""Figures are reproducible PNGs; missing inputs are noted, not drawn."""

from pipeline.reporting.figures import write_figures
from pipeline.reporting.inputs import read_inputs
from tests.reporting.builders import make_report_root


def test_figures_byte_identical_without_software_metadata(tmp_path):
    inputs = read_inputs(make_report_root(tmp_path / "root"))
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    figures = write_figures(inputs, first)
    write_figures(inputs, second)
    names = [f.filename for f in figures]
    assert names == ["train_curve.png", "pr_curve.png", "reliability.png", "gallery.png"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    png = (first / "pr_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Software" not in png and b"matplotlib" not in png.lower()
    assert (first / "gallery.png").read_bytes() == inputs.model.gallery.read_bytes()  # copied as is


def test_missing_inputs_are_notes(tmp_path):
    paths = make_report_root(tmp_path / "root", baseline=False, train_curve=False)
    paths.evaluation.pr_curve.unlink()
    paths.evaluation.gallery.unlink()
    paths.evaluation.reliability.unlink()
    out = tmp_path / "figs"
    out.mkdir()
    figures = write_figures(read_inputs(paths), out)
    assert [f.filename for f in figures] == [None, None, None, None]
    assert all("not found (made by stage" in f.missing for f in figures)
    assert list(out.iterdir()) == []
