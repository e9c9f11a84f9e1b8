"""``python -m pipeline.prepare`` end to end, in a temp dir holding only a params.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.data.ingest import REJECTED_COLUMNS
from pipeline.data.manifest import COLUMNS, read_manifest, template_list
from tests.datasets import make_coco_dataset, make_cpn_dataset, truncate

REPO = Path(__file__).resolve().parents[1]
TINY_DEMO = {
    "train_objects": 2,
    "val_objects": 1,
    "sequences_per_object": 2,
    "frames_per_sequence": 2,
    "template_size": 64,
    "distractors": 0,
    "val_frames_per_sequence": 0,  # as many as training's
    "photo_objects": 0.0,  # procedural: the photo textures have tests of their own
    "photo_grounds": 0.0,
    "lookalikes": 0.0,
}


def prepare(cwd: Path, data: dict, **sections: dict) -> subprocess.CompletedProcess:
    (cwd / "params.yaml").write_text(yaml.safe_dump({"data": data, **sections}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.prepare"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def outputs(cwd: Path, inputs: tuple[str, ...] = ("raw",)) -> set[str]:
    """Every file (or hidden leftover) in ``cwd`` apart from params.yaml and the input folders."""
    found = {p.relative_to(cwd).as_posix() for p in cwd.rglob("*") if p.is_file() or p.name.startswith(".")}
    return {p for p in found if p != "params.yaml" and p.split("/")[0] not in inputs}


def test_demo_end_to_end(tmp_path: Path):
    run = prepare(tmp_path, {"source": "demo", "demo": TINY_DEMO})
    assert run.returncode == 0, run.stderr
    m = read_manifest(tmp_path / "data/prepared/manifest.csv")
    assert list(m.columns) == COLUMNS
    assert len(m) == 3 * 2 * 2
    assert m.groupby("split")["object_id"].nunique().to_dict() == {"train": 2, "val": 1}
    assert m.groupby("object_id")["sequence_id"].nunique().tolist() == [2, 2, 2]
    assert (m["width"] == 1024).all() and (m["height"] == 576).all()
    for _, row in m.iterrows():  # relative to the run's root and really there
        assert row["image"].startswith("data/prepared/demo/") and (tmp_path / row["image"]).is_file()
        assert all((tmp_path / t).is_file() for t in template_list(row["templates"]))
    rejected = pd.read_csv(tmp_path / "data/prepared/rejected.csv")
    assert list(rejected.columns) == REJECTED_COLUMNS and rejected.empty
    stats = json.loads((tmp_path / "data/stats.json").read_text())
    assert stats["rejected"] == 0 and stats["train"]["frames"] == 8 and stats["val"]["templates"] == 3
    # only the declared outputs: data/prepared/ and data/stats.json
    assert {p.split("/demo/")[0] for p in outputs(tmp_path)} == {
        "data/prepared",
        "data/prepared/manifest.csv",
        "data/prepared/rejected.csv",
        "data/stats.json",
    }


def test_demo_photos_missing_is_one_line_naming_the_keys(tmp_path: Path):
    demo = {**TINY_DEMO, "photo_objects": 0.5}
    run = prepare(tmp_path, {"source": "demo", "demo": demo}, realset={"source": str(tmp_path / "nowhere")})
    assert run.returncode != 0
    assert "data.demo.photo_objects" in run.stderr and "nowhere" in run.stderr and "set both to 0" in run.stderr
    assert "Traceback" not in run.stderr
    assert not [p for p in (tmp_path / "data").rglob("*") if p.is_file()]  # nothing written
    assert "WARN" not in run.stderr  # no OpenCV noise about the missing file


def test_rerun_replaces_the_output(tmp_path: Path):
    root = make_cpn_dataset(tmp_path / "raw")
    assert prepare(tmp_path, {"source": "raw"}).returncode == 0
    (tmp_path / "data/prepared/leftover.txt").write_text("old")
    assert prepare(tmp_path, {"source": "raw", "format": "cpn"}).returncode == 0
    assert not (tmp_path / "data/prepared/leftover.txt").exists()
    m = read_manifest(tmp_path / "data/prepared/manifest.csv")
    assert m["image"].str.startswith("raw/").all() and root.is_dir()


def test_user_data_outside_the_root_gets_absolute_paths(tmp_path: Path):
    data = make_cpn_dataset(tmp_path / "outside")
    cwd = tmp_path / "repo"
    cwd.mkdir()
    assert prepare(cwd, {"source": str(data)}).returncode == 0
    m = read_manifest(cwd / "data/prepared/manifest.csv")
    assert m["image"].map(lambda p: Path(p).is_absolute() and Path(p).is_file()).all()


def test_skip_mode_writes_rejected_and_warns(tmp_path: Path):
    make_cpn_dataset(tmp_path / "raw")
    truncate(tmp_path / "raw/train/search/images/Class_2_frame_10.jpg")
    (tmp_path / "raw/val/search/labels/Class_4_frame_0.txt").write_text("0 0.5 0.5\n")
    run = prepare(tmp_path, {"source": "raw", "on_error": "skip"})
    assert run.returncode == 0, run.stderr
    rejected = pd.read_csv(tmp_path / "data/prepared/rejected.csv")
    assert rejected["file"].tolist() == [
        "raw/val/search/labels/Class_4_frame_0.txt",
        "raw/train/search/images/Class_2_frame_10.jpg",
    ]
    assert rejected["line"].fillna(0).astype(int).tolist() == [1, 0]
    assert "2 bad inputs skipped" in run.stderr and "WARNING" in run.stderr
    assert json.loads((tmp_path / "data/stats.json").read_text())["rejected"] == 2


def test_every_input_rejected_names_the_reasons_and_leaves_nothing_stale(tmp_path: Path):
    make_cpn_dataset(tmp_path / "raw")
    truncate(tmp_path / "raw/train/search/images/Class_2_frame_10.jpg")
    assert prepare(tmp_path, {"source": "raw", "on_error": "skip"}).returncode == 0  # one row in rejected.csv
    make_cpn_dataset(tmp_path / "broken", train=("1", "2"), val=(), frames=(0, 1))
    frames = sorted((tmp_path / "broken/train/search/images").glob("*.jpg"))
    assert len(frames) == 4
    for frame in frames:
        frame.write_bytes(b"not a jpeg")
    run = prepare(tmp_path, {"source": "broken", "on_error": "skip"})
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in run.stderr
    assert "no usable frames, all 4 inputs were rejected (first: broken/train/search/images/Class_1_frame_0.jpg: " \
        in errors[0]
    assert errors[0].endswith("every reason is listed in data/prepared/rejected.csv")
    rejected = pd.read_csv(tmp_path / "data/prepared/rejected.csv")
    assert sorted(rejected["file"]) == [f"broken/train/search/images/{f.name}" for f in frames]
    assert rejected["reason"].str.len().gt(0).all()
    # nothing of the first run is left to pass for this one's
    assert outputs(tmp_path, ("raw", "broken")) == {"data/prepared/rejected.csv"}


def test_raise_mode_stops_with_the_file_and_writes_nothing(tmp_path: Path):
    make_cpn_dataset(tmp_path / "raw")
    (tmp_path / "raw/val/search/labels/Class_4_frame_0.txt").write_text("0 0.5 x 0.1 0.1\n")
    run = prepare(tmp_path, {"source": "raw"})
    assert run.returncode == 2
    assert "error: raw/val/search/labels/Class_4_frame_0.txt:1: not a number" in run.stderr
    assert "Traceback" not in run.stderr
    assert outputs(tmp_path) == set()


def test_coco_references_land_in_the_output(tmp_path: Path):
    make_coco_dataset(tmp_path / "coco")
    run = prepare(tmp_path, {"source": "coco", "format": "coco", "val_fraction": 0.4})
    assert run.returncode == 0, run.stderr
    m = read_manifest(tmp_path / "data/prepared/manifest.csv")
    refs = {t for cell in m["templates"] for t in template_list(cell)}
    assert len(refs) == 5 * 3
    assert all(t.startswith("data/prepared/references/") and (tmp_path / t).is_file() for t in refs)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"on_error": "maybe"}, "error: params.yaml: data.on_error: 'maybe' is not one of raise, skip"),
        ({"val_fraction": 0}, "error: params.yaml: data.val_fraction: 0.0 is out of range"),
        ({"sauce": "demo"}, "error: params.yaml: data.sauce: unknown key"),
        ({"source": "missing"}, "error: missing: data folder does not exist"),
        ({"source": "data/prepared/demo"}, "error: data.source: data/prepared/demo is inside data/prepared"),
        ({"source": "demo", "format": "coco"}, "error: data.format: 'coco' does not apply to the demo data (cpn)"),
    ],
)
def test_bad_params_exit_2_without_traceback(tmp_path: Path, data: dict, message: str):
    run = prepare(tmp_path, data)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert outputs(tmp_path) == set()
