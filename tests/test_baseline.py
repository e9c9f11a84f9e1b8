"""Stage ``baseline`` end to end: real frames and reference photos in a temp repository root,
resized by ``resize_templates``, matched by ``python -m pipeline.baseline``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import baseline, resize_templates
from pipeline.cli import UserError
from pipeline.data.manifest import COLUMNS, TEMPLATE_SEP
from pipeline.paths import Paths
from tests.baseline import iou, reference_photo

REPO = Path(__file__).resolve().parents[1]
FRAME_W, FRAME_H = 1024, 576  # original frames; the stage matches at 512 x 288
PHOTO = 128  # reference photo side; resize_templates makes 64 px templates
PARAMS = {
    "templates": {"size": 64, "workers": 1},
    # Photos are pasted unscaled into the frames: PHOTO / 2 = 64 px at search size, scale 1.0.
    "baseline": {"search_size": [512, 288], "scales": [0.8, 1.0, 1.25], "rotations": [0, 90],
                 "template_crop": 0.7, "score_threshold": 0.5},
    "evaluate": {"gallery_frames": 2},
}


def _turn_box(box, turns: int, side: int = PHOTO):
    """A box in a ``side`` square photo after ``turns`` quarter turns (np.rot90's sense)."""
    for _ in range(turns % 4):
        x1, y1, x2, y2 = box
        box = (y1, side - x2, y2, side - x1)
    return box


def _photos(object_id: str) -> tuple[list[np.ndarray], tuple[float, float, float, float]]:
    """Two reference photos (RGB) per object, and the object's box in them; ``b`` is a
    different object (colours swapped, half a turn)."""
    photo, box = reference_photo(PHOTO, seed=0)
    if object_id == "b":
        photo, box = np.rot90(photo[..., ::-1], 2).copy(), _turn_box(box, 2)
    return [photo, np.clip(photo.astype(np.int16) + 10, 0, 255).astype(np.uint8)], box  # 2nd: brighter


def _write_rgb(path: Path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path.as_posix()


def make_repo(root: Path) -> dict[str, tuple[float, float, float, float] | None]:
    """Photos, frames, data/prepared/manifest.csv and params.yaml under ``root``; returns the true
    box (original pixels) of each val frame, None where the target is absent."""
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    rng = np.random.default_rng(0)
    truth: dict[str, tuple[float, float, float, float] | None] = {}
    rows = []
    # Per frame: top-left of the pasted photo in original pixels (None: absent), quarter turns.
    placements = [((200, 100), 0), ((700, 380), 1), (None, 0)]
    for object_id in ("a", "b"):
        photos, box = _photos(object_id)
        refs = [_write_rgb(root / "photos" / object_id / f"ref_{k}.jpg", p) for k, p in enumerate(photos)]
        for index, (where, turns) in enumerate(placements):
            frame = np.clip(rng.normal(128, 35, (FRAME_H, FRAME_W, 3)), 0, 255).astype(np.uint8)
            image = f"frames/{object_id}_{index}.jpg"
            truth[image] = None
            if where is not None:
                x, y = where
                frame[y : y + PHOTO, x : x + PHOTO] = np.rot90(photos[0], turns)
                x1, y1, x2, y2 = _turn_box(box, turns)
                truth[image] = (x + x1, y + y1, x + x2, y + y2)
            _write_rgb(root / image, frame)
            x1, y1, x2, y2 = truth[image] or (None,) * 4
            rows.append({"split": "val", "object_id": object_id, "sequence_id": f"{object_id}_s0",
                         "frame_index": index, "image": image, "width": FRAME_W, "height": FRAME_H,
                         "x1": x1, "y1": y1, "x2": x2, "y2": y2, "templates": TEMPLATE_SEP.join(refs)})
    # A train frame that does not exist: the stage must read the val split only.
    rows.append({**rows[0], "split": "train", "sequence_id": "a_train", "image": "frames/missing.jpg"})
    out = root / "data" / "prepared" / "manifest.csv"
    out.parent.mkdir(parents=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(out, index=False)
    return truth


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    """A temp root with prepared data and resized templates; the cwd for in-process stages."""
    monkeypatch.chdir(tmp_path)
    truth = make_repo(tmp_path)
    resize_templates.main()
    return tmp_path, truth


def test_stage_scores_the_val_frames_and_writes_every_output(repo):
    root, truth = repo
    proc = subprocess.run([sys.executable, "-m", "pipeline.baseline"], cwd=root, capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = Paths(root).baseline
    for path in (out.metrics, out.per_object, out.per_size, out.pr_curve, out.score_hist, out.frames,
                 out.predictions, out.gallery):
        assert path.is_file() and path.stat().st_size > 0, path

    metrics = json.loads(out.metrics.read_text())
    assert metrics["frames"] == 6 and metrics["frames_with_target"] == 4 and metrics["objects"] == 2
    for key in ("AP", "AP50", "AP75", "precision", "recall", "f1", "success", "mean_iou", "fp_rate"):
        assert 0.0 <= metrics[key] <= 1.0, key
    # Each object is found (upright and turned) and outscores every empty frame.
    assert metrics["success"] == 1.0 and metrics["recall"] == 1.0 and metrics["AP50"] == 1.0
    assert metrics["fp_rate"] == 0.0 and metrics["mean_iou"] > 0.8
    assert metrics["score_threshold"] == 0.5 and metrics["ms_per_frame"] > 0

    predictions = pd.read_csv(out.predictions, dtype={"object_id": str})
    assert len(predictions) == 6  # one best match per frame
    assert predictions["score"].between(0, 1).all()
    for row in predictions.itertuples():
        if truth[row.image] is not None:  # boxes come back in original frame pixels
            assert iou((row.x1, row.y1, row.x2, row.y2), truth[row.image]) > 0.8
    frames = pd.read_csv(out.frames)
    assert sorted(frames["outcome"]) == ["TN", "TN", "TP", "TP", "TP", "TP"]


def test_missing_prepared_data_names_the_stage_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    with pytest.raises(UserError, match="manifest.csv: not found; run the prepare stage first"):
        baseline.main()


def test_missing_templates_name_the_stage_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    make_repo(tmp_path)
    with pytest.raises(UserError, match="templates.csv: not found; run resize_templates"):
        baseline.main()


def test_missing_frame_is_named(repo):
    root, _ = repo
    (root / "frames" / "b_1.jpg").unlink()
    with pytest.raises(UserError, match="frames/b_1.jpg"):
        baseline.main()
    assert not Paths(root).baseline.metrics.exists()
