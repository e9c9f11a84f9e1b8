"""The demo's real-photo textures and look-alike distractors (data.demo.photo_*, lookalikes)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError, DemoConfig
from pipeline.data.demo import generate_demo, lookalike, object_spec, render_sequence, render_templates
from pipeline.data.real_sources import BACKGROUNDS, OBJECTS, OPENCV_DATA, TRAINING_PHOTOS, load_training_photos
from tests.datasets import demo_config

if not (OPENCV_DATA / "box.png").is_file():
    if os.environ.get("NEEDLE_REQUIRE_OPENCV_DOC"):
        raise RuntimeError(f"{OPENCV_DATA}/box.png missing: bash system-packages.sh")
    pytest.skip(f"OpenCV's sample photos are not installed ({OPENCV_DATA}): bash system-packages.sh",
                allow_module_level=True)

PLAIN = demo_config(train_objects=6, val_objects=1, frames_per_sequence=2, template_size=128, distractors=2)
PHOTO = dataclasses.replace(PLAIN, photo_objects=1.0, photo_grounds=1.0, lookalikes=1.0)


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, ...]:
    return load_training_photos()


def test_training_photos_are_not_check_set_files() -> None:
    check = {(v.name, v.frame) for o in OBJECTS for v in o.views} | {(v.name, v.frame) for v in BACKGROUNDS}
    check_names = {name for name, _ in check if not name.endswith(".avi")}
    for v in TRAINING_PHOTOS:
        assert (v.name, v.frame) not in check and v.name not in check_names, v.name


def test_photo_share_picks_identities(photos: tuple[np.ndarray, ...]) -> None:
    specs = [object_spec(0, o, 0.5) for o in range(200)]
    share = np.mean([s.photo is not None for s in specs])
    assert 0.35 < share < 0.65
    assert all(object_spec(0, o, 0.0).photo is None for o in range(50))
    # The photo draw has its own stream: everything else about an identity stays as it was.
    a, b = object_spec(0, 7, 0.0), object_spec(0, 7, 1.0)
    assert all(np.array_equal(p, q) for p, q in zip(a.polygons, b.polygons))
    assert np.array_equal(a.part_colour, b.part_colour)


def test_photo_identity_shows_its_photo(photos: tuple[np.ndarray, ...]) -> None:
    plain = list(render_sequence(0, PLAIN, 3, 0, photos=photos))
    textured = list(render_sequence(0, PHOTO, 3, 0, photos=photos))
    assert [f.box for f in plain] == [f.box for f in textured]  # same geometry, other pixels
    assert any(not np.array_equal(p.image, t.image) for p, t in zip(plain, textured))
    refs = render_templates(0, PHOTO, 3, photos)
    assert len(refs) == 3 and all(r.shape == (128, 128, 3) for r in refs)
    assert not np.array_equal(refs[0], render_templates(0, PLAIN, 3, photos)[0])


def test_photo_identity_without_photos_is_an_error() -> None:
    with pytest.raises(ValueError, match="no training photos"):
        list(render_sequence(0, dataclasses.replace(PLAIN, photo_objects=1.0), 3, 0))


def test_lookalike_shares_outline_or_surface() -> None:
    target, other = object_spec(0, 1), object_spec(0, 2)
    twin = lookalike(target, other, same_outline=True)
    assert all(np.array_equal(p, q) for p, q in zip(twin.polygons, target.polygons))
    assert len(twin.polygons) == len(target.polygons) == len(twin.part_colour) - 1
    assert twin.texture == other.texture and np.array_equal(twin.accent, other.accent)
    twin = lookalike(target, other, same_outline=False)
    assert all(np.array_equal(p, q) for p, q in zip(twin.polygons, other.polygons))
    assert twin.texture == target.texture and len(twin.part_colour) == len(other.polygons) + 1


def test_generate_with_photos_is_deterministic(tmp_path: Path) -> None:
    cfg = dataclasses.replace(PHOTO, train_objects=2, frames_per_sequence=1)
    generate_demo(tmp_path / "a", cfg, seed=0, workers=1, photo_dir=OPENCV_DATA)
    generate_demo(tmp_path / "b", cfg, seed=0, workers=2, photo_dir=OPENCV_DATA)
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.jpg"))
    assert a and all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in a)


def test_photos_needed_but_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="photo_objects"):
        generate_demo(tmp_path / "a", PHOTO, seed=0, workers=1)
    with pytest.raises(FileNotFoundError, match="messi5.jpg.*opencv-doc"):
        generate_demo(tmp_path / "b", PHOTO, seed=0, workers=1, photo_dir=tmp_path / "nowhere")
    assert not (tmp_path / "b").exists()  # nothing written before the error
    # A procedural demo never reads the folder.
    generate_demo(tmp_path / "c", dataclasses.replace(PLAIN, train_objects=1, frames_per_sequence=1), seed=0,
                  workers=1, photo_dir=tmp_path / "nowhere")
