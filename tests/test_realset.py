"""The real-photo check set: built from the installed photos (Debian's opencv-doc, scikit-learn),
then read back by the project's own prepare code. Real files, no mocks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.cli import UserError
from pipeline.config import DataConfig
from pipeline.data.manifest import read_manifest, template_list
from pipeline.data.real_sources import OBJECTS, OPENCV_DATA, used_files
from pipeline.paths import Paths
from pipeline.prepare import prepare
from pipeline.realset import FRAME_H, FRAME_W, LONG_SIDE, build_realset, is_built, main

if not (OPENCV_DATA / "box.png").is_file():
    # CI installs opencv-doc (system-packages.sh) and sets this, so a missing package fails there.
    if os.environ.get("NEEDLE_REQUIRE_OPENCV_DOC"):
        raise RuntimeError(f"{OPENCV_DATA}/box.png missing: bash system-packages.sh")
    pytest.skip(f"OpenCV's sample photos are not installed ({OPENCV_DATA}): bash system-packages.sh",
                allow_module_level=True)

# Two objects seen across a real viewpoint change, and two cut out of single photos.
SOME = ["box", "graffiti", "apple", "fish"]


@pytest.fixture(scope="module")
def realset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("realset") / "realset"
    counts = build_realset(out, frames_per_object=4, absent_every=4, seed=3, objects=SOME)
    assert counts == {"objects": 4, "frames": 16, "absent": 4}
    return out


def test_prepare_reads_it_as_refdet(realset, tmp_path):
    prepare(Paths(tmp_path), DataConfig(source=str(realset), format="auto"))
    m = read_manifest(tmp_path / "data/prepared/manifest.csv")
    assert len(m) == 16 and sorted(m.object_id.unique()) == sorted(SOME)
    assert (m.width == FRAME_W).all() and (m.height == FRAME_H).all()
    present = m.dropna(subset=["x1"])
    assert len(present) == 12
    assert set(m[m.x1.isna()].frame_index) == {3}  # every 4th frame leaves the target out
    sides = (present[["x2", "y2"]].to_numpy() - present[["x1", "y1"]].to_numpy()).max(axis=1)
    assert (sides >= LONG_SIDE[0] * 0.6).all() and (sides <= LONG_SIDE[1] + 1).all()
    assert (present.x1 >= 0).all() and (present.x2 <= FRAME_W).all() and (present.y2 <= FRAME_H).all()
    assert m.groupby("object_id").sequence_id.nunique().eq(1).all()  # one sequence per object
    assert all(len(template_list(t)) == 3 for t in m.templates)


def test_same_seed_same_bytes_other_seed_other_frames(realset, tmp_path):
    again = tmp_path / "again"
    build_realset(again, frames_per_object=4, absent_every=4, seed=3, objects=SOME)
    files = sorted(p.relative_to(realset) for p in realset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((realset / f).read_bytes() == (again / f).read_bytes() for f in files)
    other = tmp_path / "other"
    build_realset(other, frames_per_object=1, absent_every=0, seed=4, objects=["box"])
    assert (other / "search/labels/box_frame_000000.txt").read_text() != (realset / "search/labels/box_frame_000000.txt").read_text()


def test_sources_list_every_file_and_licence(realset):
    text = (realset / "SOURCES.md").read_text()
    for source, name, licence in used_files():
        assert f"| {source} | `{name}` | {licence} |" in text
    assert "skimage" not in text and "matplotlib" not in text  # kept for held-out evaluation


def test_evaluate_scores_every_frame(realset, tmp_path, monkeypatch):
    """The README's command, with a tiny untrained checkpoint: every frame scored, SOURCES.md ignored."""
    import json

    from pipeline.evaluate import main as evaluate_main
    from tests.test_evaluate import make_workdir

    monkeypatch.chdir(make_workdir(tmp_path / "work"))
    evaluate_main(["--data", str(realset), "--checkpoint", "models/best.pt", "--out", str(tmp_path / "scored")])
    metrics = json.loads((tmp_path / "scored/metrics.json").read_text())
    assert metrics["frames"] == 16 and metrics["objects"] == 4


def test_every_object_has_a_photo(tmp_path):
    counts = build_realset(tmp_path / "all", frames_per_object=1, absent_every=0, distractors=0)
    assert counts == {"objects": len(OBJECTS), "frames": len(OBJECTS), "absent": 0}


def test_bad_input_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="--objects: unknown nope"):
        build_realset(tmp_path / "x", objects=["nope"])
    with pytest.raises(UserError, match=r"box.png: not found .*opencv-doc"):
        build_realset(tmp_path / "y", tmp_path, objects=["box"])
    assert not (tmp_path / "y").exists()  # nothing half-written
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(f"realset: {{source: {tmp_path / 'nowhere'}}}\n")
    with pytest.raises(UserError, match="realset.source: .*nowhere is not a folder; install .*realset.enabled: false"):
        main([])
    assert not Path("data/realset").exists()


def test_stage_reads_params_and_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("realset: {frames_per_object: 2, absent_every: 2, distractors: 1, seed: 5}\n")
    main(["--objects", "box", "graffiti"])
    assert is_built(Path("data/realset"))
    assert len(list(Path("data/realset/search/images").iterdir())) == 4
    Path("params.yaml").write_text("realset: {enabled: false}\n")
    main([])
    assert not is_built(Path("data/realset"))
    assert [p.name for p in Path("data/realset").iterdir()] == ["DISABLED.md"]


def test_evaluate_stage_scores_the_val_split_and_the_check_set(realset, tmp_path, monkeypatch, cpn_root):
    """``python -m pipeline.evaluate`` (the DVC stage): the val split into reports/evaluate, the
    check set in data/realset into reports/realset; without a set, a metrics.json that says so."""
    import json
    import shutil

    from pipeline.config import DataConfig, TemplatesConfig
    from pipeline.evaluate import main as evaluate_main
    from pipeline.paths import Paths
    from pipeline.prepare import prepare
    from pipeline.resize_templates import resize_templates
    from tests.test_evaluate import make_workdir

    monkeypatch.chdir(make_workdir(tmp_path / "work"))
    paths = Paths()
    prepare(paths, DataConfig(source=str(cpn_root)))
    resize_templates(paths, TemplatesConfig(size=32, workers=1))
    evaluate_main([])
    assert json.loads(paths.realset_evaluation.metrics.read_text()) == {"available": False}
    shutil.copytree(realset, paths.realset)
    evaluate_main([])
    real = json.loads(paths.realset_evaluation.metrics.read_text())
    assert real["frames"] == 16 and real["objects"] == 4
    assert json.loads(paths.evaluation.metrics.read_text())["frames"] != 16  # the val split, not the set
