"""OpenCV template matching: finds a known object pasted into a frame, across scale and rotation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.classical.template_matching import (
    MIN_SIDE,
    central_crop,
    match,
    prepare_templates,
    rotate,
    to_gray,
)
from tests.baseline import BACKGROUND, iou, paste, reference_photo

FRAME = (288, 512)  # height, width: the search size
CROP = 0.7


def plain_frame() -> np.ndarray:
    frame = np.zeros((*FRAME, 3), np.uint8)
    frame[:] = BACKGROUND
    return frame


def noisy_frame(seed: int = 1) -> np.ndarray:
    """Mid-grey with strong pixel noise (sigma 40)."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(128, 40, (*FRAME, 3)), 0, 255).astype(np.uint8)


def paste_object(frame: np.ndarray, photo: np.ndarray, box, x: int, y: int):
    """Paste only the object's pixels (not the photo's background); returns frame and its box."""
    mask = np.any(photo != BACKGROUND, axis=2)
    out = frame.copy()
    region = out[y : y + photo.shape[0], x : x + photo.shape[1]]
    region[mask] = photo[mask]
    return out, (box[0] + x, box[1] + y, box[2] + x, box[3] + y)


@pytest.mark.parametrize("background", ["plain", "noisy"])
def test_finds_object_pasted_unchanged(background: str):
    photo, box = reference_photo()
    frame = plain_frame() if background == "plain" else noisy_frame()
    frame, truth = paste_object(frame, photo, box, 301, 117)
    bank = prepare_templates([photo], CROP, scales=(0.5, 1.0, 1.5), rotations=(0, 90, 180, 270))
    found = match(to_gray(frame), bank)
    assert found is not None
    assert iou(found.box, truth) > 0.8
    assert found.template.scale == 1.0 and found.template.rotation == 0
    if background == "plain":
        assert found.score > 0.95
    else:  # the crop's corners hold photo background where the frame has noise: a lower peak
        empty = match(to_gray(noisy_frame()), bank)
        assert empty is not None and found.score > 0.8 and empty.score < 0.4


def test_rotated_object_is_found_through_the_rotations():
    photo, box = reference_photo()
    turned = np.rot90(photo).copy()  # a quarter turn counter-clockwise
    x1, y1, x2, y2 = box
    side = photo.shape[1]
    turned_box = (y1, side - x2, y2, side - x1)
    frame, truth = paste_object(noisy_frame(2), turned, turned_box, 40, 200)

    upright = match(to_gray(frame), prepare_templates([photo], CROP, (1.0,), (0,)))
    found = match(to_gray(frame), prepare_templates([photo], CROP, (1.0,), (0, 90, 180, 270)))
    assert found is not None and upright is not None
    assert found.template.rotation == 90
    assert iou(found.box, truth) > 0.8
    assert found.score > 0.8 and found.score > upright.score + 0.2


def test_scaled_object_is_found_through_the_scales():
    photo, box = reference_photo()
    small = cv2.resize(photo, (32, 32), interpolation=cv2.INTER_AREA)  # half size
    # The whole small photo: resizing blended the object's rim into the (plain) background.
    frame = paste(plain_frame(), small, 400, 30)
    truth = (box[0] / 2 + 400, box[1] / 2 + 30, box[2] / 2 + 400, box[3] / 2 + 30)
    found = match(to_gray(frame), prepare_templates([photo], CROP, (0.5, 1.0), (0,)))
    assert found is not None
    assert found.template.scale == 0.5
    assert iou(found.box, truth) > 0.8 and found.score > 0.9


def test_best_of_several_references_wins():
    photo, box = reference_photo(seed=0)
    other = np.rot90(noisy_frame(5)[:64, :64]).copy()  # a reference photo of something else
    frame, truth = paste_object(noisy_frame(3), photo, box, 200, 100)
    found = match(to_gray(frame), prepare_templates([other, photo], CROP, (1.0,), (0,)))
    assert found is not None and found.template.source == 1
    assert iou(found.box, truth) > 0.8


def test_templates_larger_than_the_frame_are_skipped():
    photo, _ = reference_photo()
    frame = to_gray(paste(plain_frame()[:40, :60], cv2.resize(photo, (32, 32), interpolation=cv2.INTER_AREA), 10, 4))
    assert match(frame, prepare_templates([photo], CROP, (1.0,), (0,))) is None  # 45 px > 40 px
    assert match(frame, []) is None
    found = match(frame, prepare_templates([photo], CROP, (0.5, 1.0, 2.0), (0,)))
    assert found is not None and found.template.scale == 0.5  # only the 22 px template fits
    assert found.box[2] <= 60 and found.box[3] <= 40


def test_bank_sizes_order_and_dropped_templates():
    photo, _ = reference_photo()
    bank = prepare_templates([photo, photo[:, :48]], 0.5, scales=(0.5, 1.0), rotations=(0, 90))
    assert len(bank) == 2 * 2 * 2
    assert [(t.source, t.rotation, t.scale) for t in bank[:4]] == [(0, 0, 0.5), (0, 0, 1.0), (0, 90, 0.5), (0, 90, 1.0)]
    assert bank[1].image.shape == (32, 32) and bank[1].image.dtype == np.float32
    assert bank[5].image.shape == (32, 24) and bank[7].image.shape == (24, 32)  # 64 x 48 photo, turned
    # Under MIN_SIDE pixels, or flat (OpenCV would score a flat template 1.0 everywhere): dropped.
    tiny = (MIN_SIDE - 1) / (64 * 0.5)
    assert prepare_templates([photo], 0.5, (tiny,), (0,)) == []
    assert prepare_templates([np.full((64, 64, 3), 128, np.uint8)], 0.5, (1.0,), (0,)) == []


def test_score_is_clipped_to_zero_for_anticorrelation():
    photo, _ = reference_photo()
    template = prepare_templates([photo], CROP, (1.0,), (0,))
    window = 255.0 - template[0].image  # the negative: correlation -1, the only window
    found = match(window, template)
    assert found is not None and found.score == 0.0


def test_rotation_sense_and_exact_quarter_turns():
    photo, _ = reference_photo()
    gray = to_gray(photo)
    np.testing.assert_array_equal(rotate(gray, 90), np.rot90(gray))
    np.testing.assert_array_equal(rotate(gray, -90), np.rot90(gray, 3))
    np.testing.assert_array_equal(rotate(gray, 360), gray)
    # warpAffine for other angles turns the same way as np.rot90 (counter-clockwise).
    near = rotate(gray, 89.5)
    assert near.shape == gray.shape
    assert np.abs(central_crop(near, CROP) - central_crop(np.rot90(gray), CROP)).mean() < 6
    assert np.abs(central_crop(near, CROP) - central_crop(np.rot90(gray, 3), CROP)).mean() > 20


@pytest.mark.parametrize("side", [64, 63, 384])
def test_central_crop_of_a_rotated_square_holds_only_photo_pixels(side: int):
    photo = np.random.default_rng(0).uniform(0, 255, (side, side)).astype(np.float32)
    for angle in (15, 30, 45, 60, 135):
        # The same turn with an outside of -1000: any sample from beyond the photo would show.
        matrix = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
        marked = cv2.warpAffine(photo, matrix, (side, side), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=-1000)
        assert central_crop(marked, 0.7).min() >= 0
        np.testing.assert_allclose(central_crop(rotate(photo, angle), 0.7), central_crop(marked, 0.7), atol=1e-3)


def test_central_crop_is_centred_and_commutes_with_quarter_turns():
    photo = np.arange(64 * 48, dtype=np.float32).reshape(64, 48)
    crop = central_crop(photo, 0.7)
    assert crop.shape == (44, 32)  # 0.7 * 64 = 44.8 and 0.7 * 48 = 33.6, down to an even side
    assert crop[0, 0] == photo[10, 8]
    np.testing.assert_array_equal(central_crop(np.rot90(photo), 0.7), np.rot90(crop))
