"""Long demo clips: absence in stretches, long occlusions, look-alikes crossing the target, camera zoom and tilt."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import yaml

from pipeline.config import parse_params
from pipeline.data.demo import FRAME_H, FRAME_W, absent_frames, render_sequence
from tests.datasets import demo_config

REPO = Path(__file__).resolve().parents[2]
FRAMES = 48
PLAIN = demo_config(train_objects=6, val_objects=2, frames_per_sequence=FRAMES, distractors=1)
LONG = dataclasses.replace(PLAIN, absence="stretches", absent_stretch=10, occlusion_runs=2, occlusion_length=10,
                           crossings=2, zoom=0.5, tilt=0.3)


def _runs(frames: frozenset[int]) -> list[tuple[int, int]]:
    """(start, length) of each run of consecutive indices."""
    runs: list[tuple[int, int]] = []
    for i in sorted(frames):
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def test_long_clip_is_deterministic() -> None:
    a, b = list(render_sequence(3, LONG, 1, 0)), list(render_sequence(3, LONG, 1, 0))
    assert len(a) == FRAMES
    assert all(np.array_equal(x.image, y.image) and x.box == y.box for x, y in zip(a, b))


def test_absence_comes_in_stretches() -> None:
    cfg = dataclasses.replace(PLAIN, absence="stretches", absent_stretch=10, absent_fraction=0.3)
    total = 0
    for o in range(8):
        absent = absent_frames(0, cfg, o, 0)
        scattered = absent_frames(0, dataclasses.replace(cfg, absence="scattered"), o, 0)
        assert len(absent) == len(scattered)  # the same count, only placed differently
        runs = _runs(absent)
        assert len(runs) <= round(1.5 * len(absent) / 10) + 1
        assert all(length >= 2 for _, length in runs)
        total += len(absent)
    assert abs(total / (8 * FRAMES) - 0.3) < 0.1
    boxes = [f.box for f in render_sequence(0, cfg, 0, 0)]
    assert {i for i, b in enumerate(boxes) if b is None} == absent_frames(0, cfg, 0, 0)


def test_a_lookalike_crosses_the_target() -> None:
    # The crossing look-alike has its own random stream, so the clip with it differs from the clip
    # without it only where the look-alike is drawn.
    crossing = dataclasses.replace(PLAIN, crossings=1, absent_fraction=0.0)
    plain = dataclasses.replace(PLAIN, absent_fraction=0.0)
    for o in range(2):
        near, drawn = False, 0
        for a, b in zip(render_sequence(0, crossing, o, 0, draw_target=False),
                        render_sequence(0, plain, o, 0, draw_target=False)):
            assert a.box == b.box
            diff = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).max(axis=2) > 30
            if diff.sum() < 50:
                continue
            drawn += 1
            ys, xs = np.nonzero(diff)
            x1, y1, x2, y2 = a.box
            side = max(x2 - x1, y2 - y1)
            gap = max(x1 - xs.max(), xs.min() - x2, y1 - ys.max(), ys.min() - y2)
            near |= gap < side
        assert near and drawn, o


def _inside(box: tuple[int, int, int, int] | None) -> bool:
    return box is not None and box[0] > 0 and box[1] > 0 and box[2] < FRAME_W and box[3] < FRAME_H


def test_zoom_changes_the_targets_size() -> None:
    # The camera has its own streams: the zoomed clip shows the still clip's objects, scaled.
    still = dataclasses.replace(PLAIN, absent_fraction=0.0)
    zoomed = dataclasses.replace(still, zoom=0.6)
    for o in range(2):
        ratios = [a.mask.sum() / b.mask.sum() if _inside(a.box) and _inside(b.box) else None
                  for a, b in zip(render_sequence(0, zoomed, o, 0), render_sequence(0, still, o, 0))]
        assert ratios[0] == 1.0  # the zoom starts at 1 ...
        last = [r for r in ratios if r is not None][-1]
        assert 2.2 < last < 2.8 or 1 / 2.8 < last < 1 / 2.2, (o, last)  # ... and ends at 1.6 ** +-2 in area


def test_long_clip_boxes_match_the_drawn_target() -> None:
    cfg = dataclasses.replace(LONG, zoom=0.3)
    checked = 0
    for a, b in zip(render_sequence(0, cfg, 0, 0), render_sequence(0, cfg, 0, 0, draw_target=False)):
        if a.box is None:
            assert a.mask is None and np.array_equal(a.image, b.image)
            continue
        x1, y1, x2, y2 = a.box
        assert 0 <= x1 < x2 <= FRAME_W and 0 <= y1 < y2 <= FRAME_H
        ys, xs = np.nonzero(a.mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == a.box
        diff = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16)).max(axis=2) > 6
        assert diff[a.mask].mean() >= 0.5  # occluders cover at most 30 %
        checked += 1
    assert checked >= 10


def test_long_occlusions_cover_the_target_for_a_while() -> None:
    occluded = dataclasses.replace(PLAIN, occlusion_runs=1, occlusion_length=20, absent_fraction=0.0)
    covered = 0
    plain = dataclasses.replace(occluded, occlusion_runs=0)
    for a, b in zip(render_sequence(0, occluded, 0, 0), render_sequence(0, plain, 0, 0)):
        covered += not np.array_equal(a.image, b.image)
    assert covered >= 10


def test_single_frames_do_not_change() -> None:
    # Training identities keep one frame per sequence in the video preset: their data stays the same.
    still = dataclasses.replace(PLAIN, frames_per_sequence=1)
    moving = dataclasses.replace(LONG, frames_per_sequence=1)
    for o in range(4):
        (a,), (b,) = render_sequence(0, still, o, 0), render_sequence(0, moving, o, 0)
        assert np.array_equal(a.image, b.image) and a.box == b.box


def test_the_documented_video_preset_keeps_training_frames() -> None:
    text = (REPO / "docs/data.md").read_text()
    command = text[text.index("python -m dvc exp run -n video"):]
    command = command[: command.index("```")]
    sets = dict(re.findall(r"-S data\.demo\.(\w+)=(\S+)", command))
    preset = parse_params({"data": {"demo": {k: yaml.safe_load(v) for k, v in sets.items()}}}).data.demo
    assert preset.val_frames_per_sequence >= 200 and preset.frames_per_sequence == 1
    assert preset.absence == "stretches" and preset.crossings >= 1 and preset.occlusion_runs >= 1
    assert preset.zoom > 0 and preset.tilt > 0
    # The same keys on the small procedural demo: training identities render as without them.
    small = demo_config(train_objects=3, val_objects=1, frames_per_sequence=1)
    keys = {k: getattr(preset, k) for k in sets if k not in ("val_frames_per_sequence", "layout")}
    with_preset = dataclasses.replace(small, **keys)
    for o in (1, 2, 3):
        (a,), (b,) = render_sequence(0, small, o, 0), render_sequence(0, with_preset, o, 0)
        assert np.array_equal(a.image, b.image) and a.box == b.box
