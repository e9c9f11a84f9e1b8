"""The built-in demo generator: layout, sizes, determinism, labels that match the drawn target."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import DemoConfig
from pipeline.data.demo import (
    FRAME_H,
    FRAME_W,
    absent_frames,
    generate_demo,
    render_sequence,
    yolo_line,
)
from tests.datasets import demo_config

SMALL = demo_config(
    train_objects=2,
    val_objects=1,
    sequences_per_object=2,
    frames_per_sequence=2,
    template_size=256,
    absent_fraction=0.25,
    distractors=1,
)
NAME = re.compile(r"Class_(\d+)_(?:ref_(\d)|frame_(\d{6}))\.(jpg|txt)$")


def _files(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "seed0"
    generate_demo(out, SMALL, seed=0, workers=1)
    return out


def _yolo_to_px(text: str) -> tuple[float, float, float, float]:
    cls, cx, cy, w, h = text.split()
    assert cls == "0"
    cx, cy, w, h = float(cx) * FRAME_W, float(cy) * FRAME_H, float(w) * FRAME_W, float(h) * FRAME_H
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def test_layout_and_names(small: Path) -> None:
    expected = set()
    for o in range(3):
        split = "val" if o < 1 else "train"
        expected |= {f"{split}/templates/Class_{o}_ref_{k}.jpg" for k in (1, 2, 3)}
        for n in (0, 1, 1000, 1001):  # sequence s, frame i -> s*1000 + i: the gap marks sequence 2
            expected.add(f"{split}/search/images/Class_{o}_frame_{n:06d}.jpg")
            expected.add(f"{split}/search/labels/Class_{o}_frame_{n:06d}.txt")
    assert set(_files(small)) == expected


def test_image_sizes(small: Path) -> None:
    for path in small.rglob("templates/*.jpg"):
        assert cv2.imread(str(path)).shape == (256, 256, 3), path
    for path in small.rglob("images/*.jpg"):
        assert cv2.imread(str(path)).shape == (FRAME_H, FRAME_W, 3), path


def test_val_objects_disjoint_from_train(small: Path) -> None:
    ids = {
        split: {int(NAME.search(p.name).group(1)) for p in (small / split).rglob("*.*")}
        for split in ("train", "val")
    }
    assert ids == {"train": {1, 2}, "val": {0}}


def test_same_seed_same_bytes_any_worker_count(small: Path, tmp_path: Path) -> None:
    generate_demo(tmp_path / "again", SMALL, seed=0, workers=2)
    assert _files(tmp_path / "again") == _files(small)


def test_other_seed_other_data(small: Path, tmp_path: Path) -> None:
    generate_demo(tmp_path / "seed1", SMALL, seed=1, workers=1)
    a, b = _files(small), _files(tmp_path / "seed1")
    assert set(a) == set(b)
    assert all(a[k] != b[k] for k in a if k.endswith(".jpg"))


def test_labels_are_boxes_of_the_right_size(small: Path) -> None:
    boxes = 0
    for path in small.rglob("labels/*.txt"):
        text = path.read_text()
        if not text:
            continue
        assert text.endswith("\n") and text.count("\n") == 1, path
        assert all(0.0 <= float(v) <= 1.0 for v in text.split()[1:]), path
        x1, y1, x2, y2 = _yolo_to_px(text)
        assert -0.01 <= x1 < x2 <= FRAME_W + 0.01 and -0.01 <= y1 < y2 <= FRAME_H + 0.01, path
        assert 36 <= max(x2 - x1, y2 - y1) <= 100, (path, x2 - x1, y2 - y1)
        boxes += 1
    assert boxes > 0


def test_files_match_renderer_and_absent_frames_are_empty(small: Path) -> None:
    for o in range(3):
        split = "val" if o < 1 else "train"
        for s in range(2):
            absent = absent_frames(0, SMALL, o, s)
            for frame in render_sequence(0, SMALL, o, s):
                name = f"Class_{o}_frame_{s * 1000 + frame.index:06d}.txt"
                label = small / split / "search" / "labels" / name
                assert label.read_text() == yolo_line(frame.box)
                assert (frame.box is None) == (frame.index in absent)


def test_box_matches_drawn_target() -> None:
    cfg = demo_config(train_objects=4, val_objects=1, frames_per_sequence=4, distractors=3)
    checked = 0
    for o in range(4):
        with_target = render_sequence(0, cfg, o, 1)
        without = render_sequence(0, cfg, o, 1, draw_target=False)
        for a, b in zip(with_target, without):
            if a.box is None:
                assert a.mask is None
                assert np.array_equal(a.image, b.image)  # nothing target-related is drawn
                continue
            ys, xs = np.nonzero(a.mask)
            mask_box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
            assert np.allclose(_yolo_to_px(yolo_line(a.box)), mask_box, atol=1.0)
            # The mask is what was drawn: most of it changes the image (occluders hide <= 30 %) ...
            diff = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).max(axis=2) > 6
            assert diff[a.mask].mean() >= 0.5
            # ... and nothing changes far from the box (shadow and blur spread a few px).
            near = np.zeros_like(a.mask)
            x1, y1, x2, y2 = a.box
            near[max(y1 - 20, 0) : y2 + 20, max(x1 - 20, 0) : x2 + 20] = True
            assert not diff[~near].any()
            checked += 1
    assert checked >= 8


def test_absent_frames_keep_the_distractors() -> None:
    # absent_frames uses its own random stream, so both configs share every other draw; an absent
    # frame must equal the present one rendered without its target, except where an occluder may
    # sit (around the target box).
    always = demo_config(train_objects=3, val_objects=1, frames_per_sequence=3, absent_fraction=1.0)
    never = demo_config(train_objects=3, val_objects=1, frames_per_sequence=3, absent_fraction=0.0)
    for o in range(3):
        absent = render_sequence(0, always, o, 0)
        present = render_sequence(0, never, o, 0, draw_target=False)
        for a, p in zip(absent, present):
            assert a.box is None and p.box is not None
            x1, y1, x2, y2 = p.box
            pad = max(x2 - x1, y2 - y1) + 20
            keep = np.ones((FRAME_H, FRAME_W), bool)
            keep[max(y1 - pad, 0) : y2 + pad, max(x1 - pad, 0) : x2 + pad] = False
            assert np.array_equal(a.image[keep], p.image[keep])


def test_absent_fraction_over_many_sequences() -> None:
    cfg = demo_config(
        train_objects=30, val_objects=10, sequences_per_object=3, frames_per_sequence=7
    )
    counts = [len(absent_frames(5, cfg, o, s)) for o in range(40) for s in range(3)]
    assert abs(sum(counts) / (len(counts) * 7) - cfg.absent_fraction) < 0.04
    assert all(0 <= c <= 7 for c in counts)


def test_too_many_frames_per_sequence(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frames_per_sequence"):
        generate_demo(tmp_path, demo_config(frames_per_sequence=1000), seed=0)


def test_val_frames_do_not_depend_on_the_number_of_training_objects(tmp_path: Path) -> None:
    # val ids come first, so adding training identities must not change a single val file
    import dataclasses

    more = dataclasses.replace(SMALL, train_objects=4)
    generate_demo(tmp_path / "a", SMALL, seed=0, workers=1)
    generate_demo(tmp_path / "b", more, seed=0, workers=1)
    assert _files(tmp_path / "a" / "val") == _files(tmp_path / "b" / "val")
    assert len(_files(tmp_path / "b" / "train")) > len(_files(tmp_path / "a" / "train"))


def test_val_sequences_can_be_longer_than_train_sequences(tmp_path: Path) -> None:
    import dataclasses

    cfg = dataclasses.replace(SMALL, sequences_per_object=1, frames_per_sequence=1, val_frames_per_sequence=3)
    generate_demo(tmp_path, cfg, seed=0, workers=1)
    assert len(list((tmp_path / "val" / "search" / "images").glob("*.jpg"))) == 3  # 1 val object x 3 frames
    assert len(list((tmp_path / "train" / "search" / "images").glob("*.jpg"))) == 2  # 2 train objects x 1
