"""pipeline.data.imageio: orientation, aspect, padding, modes and loader errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from pipeline.cli import UserError
from pipeline.data.imageio import image_size, load_rgb, pad_to_square, square_template

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def halves(w: int, h: int) -> Image.Image:
    """``w`` x ``h`` RGB image: left half red, right half blue."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = RED
    arr[:, w // 2 :] = BLUE
    return Image.fromarray(arr)


def save_with_orientation(img: Image.Image, path: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def close(pixel, colour, tol: int = 40) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, colour))


def test_wide_image_keeps_aspect_centred_with_bands_top_and_bottom(tmp_path):
    path = tmp_path / "wide.png"
    halves(200, 100).save(path)
    out = square_template(path, 64, "constant", 0)
    assert out.size == (64, 64) and out.mode == "RGB"
    arr = np.asarray(out)
    # 200x100 -> 64x32 content in rows 16..47; rows 0..15 and 48..63 are padding.
    assert (arr[:16] == 0).all() and (arr[48:] == 0).all()
    assert close(arr[32, 10], RED) and close(arr[32, 54], BLUE)
    assert close(arr[16, 5], RED) and close(arr[47, 60], BLUE)


def test_tall_image_gets_bands_left_and_right(tmp_path):
    path = tmp_path / "tall.png"
    Image.new("RGB", (50, 100), (0, 200, 0)).save(path)
    arr = np.asarray(square_template(path, 40, "constant", 255))
    assert (arr[:, :10] == 255).all() and (arr[:, 30:] == 255).all()
    assert close(arr[20, 20], (0, 200, 0))


def test_exif_orientation_6_turns_wide_photo_into_tall_content(tmp_path):
    path = save_with_orientation(halves(200, 100), tmp_path / "rot.jpg", 6)
    assert image_size(path) == (100, 200)
    img = load_rgb(path)
    assert img.size == (100, 200)
    arr = np.asarray(square_template(path, 64, "constant", 0))
    # Rotated 90 degrees clockwise: the red left half is on top; padding is left/right now.
    assert (arr[:, :16] == 0).all() and (arr[:, 48:] == 0).all()
    assert close(arr[8, 32], RED) and close(arr[56, 32], BLUE)


def test_exif_orientation_applied_with_draft_decoding(tmp_path):
    path = save_with_orientation(halves(800, 400), tmp_path / "rot_big.jpg", 6)
    img = load_rgb(path, max_side=100)
    assert img.size == (50, 100)
    arr = np.asarray(img)
    assert close(arr[20, 25], RED) and close(arr[80, 25], BLUE)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("max_side", [None, 60])
def test_every_orientation_matches_pil_exif_transpose(tmp_path, orientation, max_side):
    rng = np.random.default_rng(orientation)
    img = Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).resize(
        (360, 240), Image.Resampling.NEAREST
    )
    path = save_with_orientation(img, tmp_path / f"o{orientation}.jpg", orientation)
    with Image.open(path) as raw:
        expected = ImageOps.exif_transpose(raw).convert("RGB")
    if max_side is not None:
        expected = expected.resize(
            (60, 40) if expected.width > expected.height else (40, 60), Image.Resampling.LANCZOS
        )
    got = load_rgb(path, max_side=max_side)
    assert got.size == expected.size
    if max_side is None:
        assert image_size(path) == got.size
    diff = np.abs(np.asarray(got, np.int16) - np.asarray(expected, np.int16))
    assert diff.mean() < 3.0


def test_draft_decoding_keeps_quality(tmp_path):
    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).resize(
        (1200, 900), Image.Resampling.BICUBIC
    )
    path = tmp_path / "photo.jpg"
    smooth.save(path, quality=95)
    fast = load_rgb(path, max_side=128)
    with Image.open(path) as full:
        reference = full.convert("RGB").resize(fast.size, Image.Resampling.LANCZOS)
    assert fast.size == (128, 96)
    diff = np.abs(np.asarray(fast, np.int16) - np.asarray(reference, np.int16))
    assert diff.mean() < 1.5  # measured 0.6 (1/8-scale decode); 4.1 without the crop box


def test_max_side_does_not_enlarge_but_square_template_does(tmp_path):
    path = tmp_path / "small.png"
    halves(20, 10).save(path)
    assert load_rgb(path, max_side=64).size == (20, 10)
    out = square_template(path, 64)
    assert out.size == (64, 64)
    assert close(np.asarray(out)[32, 8], RED)


@pytest.mark.parametrize(
    "name, make",
    [
        ("gray.png", lambda: Image.new("L", (90, 60), 128)),
        ("gray.jpg", lambda: Image.new("L", (300, 200), 128)),
        ("rgba.png", lambda: Image.new("RGBA", (90, 60), (10, 20, 30, 255))),
        ("palette.png", lambda: Image.new("RGB", (90, 60), (10, 20, 30)).convert("P")),
        ("bilevel.png", lambda: Image.new("1", (90, 60), 1)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (300, 200), (0, 50, 100, 0))),
        ("line.png", lambda: Image.new("RGB", (1, 60), (9, 9, 9))),
        ("rgb.webp", lambda: Image.new("RGB", (90, 60), (9, 9, 9))),
    ],
)
@pytest.mark.parametrize("pad", ["constant", "edge", "reflect"])
def test_output_is_exactly_size_square_rgb(tmp_path, name, make, pad):
    path = tmp_path / name
    make().save(path)
    out = square_template(path, 48, pad, 0)
    assert out.size == (48, 48)
    assert out.mode == "RGB"


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((20, 30), 32896, np.uint16)).save(path)  # mid-grey in 16 bits
    arr = np.asarray(square_template(path, 30))
    assert arr.shape == (30, 30, 3)
    assert close(arr[15, 15], (128, 128, 128), tol=1)


def test_transparent_pixels_take_the_pad_value(tmp_path):
    path = tmp_path / "cutout.png"
    arr = np.zeros((40, 40, 4), np.uint8)
    arr[..., :3] = 250  # colour hidden under alpha 0 must not show
    arr[10:30, 10:30] = (0, 0, 255, 255)
    Image.fromarray(arr, "RGBA").save(path)
    out = np.asarray(square_template(path, 40, "constant", 114))
    assert (out[0, 0] == 114).all()
    assert close(out[20, 20], BLUE, tol=0)


def test_pad_modes():
    rows = np.array([[[10] * 3] * 4, [[20] * 3] * 4], np.uint8)  # 4 wide, 2 tall, rows 10 / 20
    img = Image.fromarray(rows)
    const = np.asarray(pad_to_square(img, "constant", 7))[..., 0]
    edge = np.asarray(pad_to_square(img, "edge"))[..., 0]
    reflect = np.asarray(pad_to_square(img, "reflect"))[..., 0]
    assert const[:, 0].tolist() == [7, 10, 20, 7]
    assert edge[:, 0].tolist() == [10, 10, 20, 20]
    assert reflect[:, 0].tolist() == [20, 10, 20, 10]
    for out in (const, edge, reflect):
        assert out.shape == (4, 4)


def test_pad_odd_difference_puts_extra_pixel_bottom():
    img = Image.new("L", (5, 2), 200)
    arr = np.asarray(pad_to_square(img, "constant", 0))
    assert arr.shape == (5, 5)
    assert arr[:, 0].tolist() == [0, 200, 200, 0, 0]


def test_square_input_is_returned_as_is():
    img = Image.new("RGB", (8, 8), (1, 2, 3))
    assert np.array_equal(np.asarray(pad_to_square(img, "reflect")), np.asarray(img))


def test_unknown_pad_mode_is_rejected():
    with pytest.raises(ValueError, match="wrap"):
        pad_to_square(Image.new("RGB", (4, 2)), "wrap")  # type: ignore[arg-type]


def test_corrupt_file_raises_user_error_naming_it(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"this is not an image at all")
    with pytest.raises(UserError, match="broken.jpg"):
        load_rgb(path)
    with pytest.raises(UserError, match="broken.jpg"):
        square_template(path, 32)
    with pytest.raises(UserError, match="broken.jpg"):
        image_size(path)


def test_truncated_jpeg_raises_user_error_naming_it(tmp_path):
    good = tmp_path / "good.jpg"
    halves(400, 300).save(good, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for max_side in (None, 64):
        with pytest.raises(UserError, match="cut.jpg"):
            load_rgb(cut, max_side=max_side)


def test_missing_file_raises_user_error_naming_it(tmp_path):
    with pytest.raises(UserError, match="nowhere.png"):
        load_rgb(tmp_path / "nowhere.png")
