"""Stage resize_templates: end to end in a temp repository root, plus its helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pipeline.data.manifest import COLUMNS, TEMPLATE_COLUMNS, TEMPLATE_SEP
from pipeline.resize_templates import collect_jobs, folder_name

REPO = Path(__file__).resolve().parents[1]
SIZE = 32


def run_stage(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.resize_templates"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


def write_params(root: Path, **templates) -> None:
    cfg = {"size": SIZE, "workers": 2, **templates}
    (root / "params.yaml").write_text(yaml.safe_dump({"templates": cfg}))


def write_manifest(root: Path, rows: list[dict]) -> None:
    out = root / "data" / "prepared" / "manifest.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(out, index=False)


def row(object_id: str, templates: list[str], frame: int = 0, split: str = "train") -> dict:
    return {
        "split": split, "object_id": object_id, "sequence_id": f"{object_id}_s0",
        "frame_index": frame, "image": f"frames/{object_id}_{frame}.jpg",
        "width": 1024, "height": 576, "x1": 10.0, "y1": 20.0, "x2": 40.0, "y2": 50.0,
        "templates": TEMPLATE_SEP.join(templates),
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A temp root with photos for objects ``b`` (2 photos) and ``a`` (1, tagged rotated)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (120, 60), (200, 0, 0)).save(photos / "b_front.jpg", quality=95)
    Image.new("RGB", (40, 80), (0, 200, 0)).save(photos / "b_back.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (300, 100), (0, 0, 200)).save(photos / "a.jpg", quality=95, exif=exif)
    write_params(tmp_path)
    write_manifest(tmp_path, [
        # b listed first and with its photos in a different order on each row: output is sorted.
        row("b", ["photos/b_front.jpg", "photos/b_back.png"], 0),
        row("b", ["photos/b_back.png", "photos/b_front.jpg"], 1),
        row("a", ["photos/a.jpg"], 0, split="val"),
        row("a", ["photos/a.jpg"], 1, split="val"),
    ])
    return tmp_path


def test_stage_writes_square_templates_and_table(repo: Path):
    result = run_stage(repo)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(repo / "data" / "templates" / "templates.csv", dtype={"object_id": str})
    assert list(table.columns) == TEMPLATE_COLUMNS
    assert table.to_dict("records") == [
        {"object_id": "a", "index": 0, "source": "photos/a.jpg",
         "path": "data/templates/a/0.jpg", "source_width": 100, "source_height": 300},
        {"object_id": "b", "index": 0, "source": "photos/b_back.png",
         "path": "data/templates/b/0.jpg", "source_width": 40, "source_height": 80},
        {"object_id": "b", "index": 1, "source": "photos/b_front.jpg",
         "path": "data/templates/b/1.jpg", "source_width": 120, "source_height": 60},
    ]
    for rel in table["path"]:
        with Image.open(repo / rel) as img:
            assert img.format == "JPEG" and img.mode == "RGB" and img.size == (SIZE, SIZE)
    files = sorted(p.relative_to(repo).as_posix() for p in (repo / "data").rglob("*"))
    assert not [f for f in files if "/." in f], "temp folders left behind"

    # a.jpg is 300x100 tagged "rotate 90": upright it is tall, so padding is left and right.
    arr = np.asarray(Image.open(repo / "data/templates/a/0.jpg"))
    assert arr[:, :6].max() < 30 and arr[SIZE // 2, SIZE // 2, 2] > 150
    # b_front is wide: padding top and bottom, red in the middle.
    arr = np.asarray(Image.open(repo / "data/templates/b/1.jpg"))
    assert arr[:6].max() < 30 and arr[SIZE // 2, SIZE // 2, 0] > 150


def test_stage_output_is_deterministic_and_replaces_old_output(repo: Path):
    assert run_stage(repo).returncode == 0
    out = repo / "data" / "templates"
    first = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "stale.jpg").write_bytes(b"old")
    write_params(repo, workers=1)  # inline path must give the same bytes as the pool
    assert run_stage(repo).returncode == 0
    second = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert first == second


def test_stage_pads_with_configured_value(repo: Path):
    write_params(repo, pad="constant", pad_value=255, size=48)
    assert run_stage(repo).returncode == 0
    arr = np.asarray(Image.open(repo / "data/templates/b/1.jpg"))
    assert arr.shape == (48, 48, 3)
    assert arr[:8].min() > 225


def test_missing_manifest_says_run_prepare(tmp_path: Path):
    write_params(tmp_path)
    result = run_stage(tmp_path)
    assert result.returncode == 2
    assert "manifest.csv" in result.stderr and "prepare" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_template_names_file_and_leaves_no_output(repo: Path):
    (repo / "photos" / "b_back.png").write_bytes(b"\x89PNG broken")
    result = run_stage(repo)
    assert result.returncode == 2, result.stderr
    assert "photos/b_back.png" in result.stderr and "Traceback" not in result.stderr
    assert not (repo / "data" / "templates").exists()


def test_missing_template_names_file(repo: Path):
    (repo / "photos" / "a.jpg").unlink()
    result = run_stage(repo)
    assert result.returncode == 2
    assert "photos/a.jpg" in result.stderr


def test_not_a_manifest_is_a_user_error(tmp_path: Path):
    write_params(tmp_path)
    bad = tmp_path / "data" / "prepared" / "manifest.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("a,b\n1,2\n")
    result = run_stage(tmp_path)
    assert result.returncode == 2
    assert "manifest.csv" in result.stderr and "Traceback" not in result.stderr


def test_collect_jobs_is_unique_sorted_and_resolves_paths(tmp_path: Path):
    manifest = pd.DataFrame(
        [row("z", ["p/2.jpg", "p/1.jpg"]), row("z", ["p/1.jpg"]), row("a b", ["/abs/x.jpg"])],
        columns=COLUMNS,
    )
    jobs = collect_jobs(manifest, tmp_path)
    assert [(j.object_id, j.index, j.source) for j in jobs] == [
        ("a b", 0, "/abs/x.jpg"), ("z", 0, "p/1.jpg"), ("z", 1, "p/2.jpg"),
    ]
    assert jobs[0].file == Path("/abs/x.jpg") and jobs[1].file == tmp_path / "p/1.jpg"
    assert jobs[2].rel == "z/1.jpg"


@pytest.mark.parametrize("object_id", ["cup-01", "obj_7.v2"])
def test_safe_object_ids_are_their_own_folder(object_id: str):
    assert folder_name(object_id) == object_id


@pytest.mark.parametrize("object_id", ["a/b", "..", "tasse à café", "a b"])
def test_unsafe_object_ids_get_a_clean_unique_folder(object_id: str):
    name = folder_name(object_id)
    assert "/" not in name and name not in (".", "..") and name.isascii() and " " not in name
    assert folder_name("a_b") != folder_name("a/b") != folder_name("a b")
