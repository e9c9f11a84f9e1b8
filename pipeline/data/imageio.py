"""Image loading shared by ``resize_templates`` and the training data set.

Conventions: sizes are ``(width, height)`` in pixels, as PIL reports them; images are returned
as PIL images in mode ``RGB`` (H x W x 3 uint8 when turned into an array), already rotated by
their EXIF orientation, so "width" always means the width a person sees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from pipeline.cli import UserError

PadMode = Literal["constant", "edge", "reflect"]
PAD_MODES: tuple[str, ...] = ("constant", "edge", "reflect")

# Each reduce() step before LANCZOS may shrink by at most this factor; 3.0 is indistinguishable
# from plain LANCZOS to the eye (Pillow's docs) and much cheaper for large downscales.
_REDUCING_GAP = 3.0

# EXIF orientation -> transposition that shows the photo upright; the table
# PIL.ImageOps.exif_transpose uses. Applied by hand so it can come after the resize, while the
# draft crop box is still in stored orientation. Orientations 5-8 swap width and height.
_EXIF_ORIENTATION_TAG = 0x0112
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}

# Decoding failures PIL raises for unreadable, truncated or hostile files.
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled so that its longest side is ``side`` (each side at least 1 pixel)."""
    w, h = size
    scale = side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _to_rgb(img: Image.Image, background: int) -> Image.Image:
    """RGB copy of ``img``; transparent pixels are laid over grey level ``background``."""
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit greyscale (PNG/TIFF): convert("RGB") would clip everything above 255 to white.
        arr = np.asarray(img, dtype=np.float32) / 257.0
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))  # mode L
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        # A plain convert("RGB") would show whatever colour hides under alpha 0 (often noise).
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (background, background, background, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of the image as displayed (EXIF orientation applied), header only."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except _READ_ERRORS as exc:
        raise UserError(f"{path}: cannot read image ({exc})") from None
    return (h, w) if orientation in _SWAPPING_ORIENTATIONS else (w, h)


def load_rgb(path: str | Path, max_side: int | None = None, *, background: int = 0) -> Image.Image:
    """Open an image as RGB with its EXIF orientation applied.

    With ``max_side``, an image whose longest side is larger comes back with that side equal to
    ``max_side`` (aspect kept); smaller images are not enlarged. JPEGs are then decoded at 1/2,
    1/4 or 1/8 scale by libjpeg (draft mode), never below the target size, which is what makes
    loading large photos cheap. Transparent pixels are composited over grey ``background``.
    Unreadable or corrupt files raise :class:`UserError` naming the file.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
            target = box = None
            if max_side is not None and max(img.size) > max_side:
                # Stored orientation throughout; the scale is uniform, so turning comes last.
                target = _fit(img.size, max_side)
                # draft() picks the largest scale keeping both sides >= the requested size, so
                # asking for the target itself never decodes below it. None for non-JPEGs.
                drafted = img.draft("RGB", target)
                if drafted is not None:
                    box = drafted[1]
            img.load()
            rgb = _to_rgb(img, background)
    except _READ_ERRORS as exc:
        raise UserError(f"{path}: cannot read image ({exc})") from None
    if target is not None and rgb.size != target:
        # The draft-decoded image rounds its size up; box is the part that maps to the photo.
        # Without it the result shifts by up to half a decoded pixel (visible at 1/8 scale).
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, box=box, reducing_gap=_REDUCING_GAP)
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return rgb.transpose(method) if method is not None else rgb


def pad_to_square(img: Image.Image, mode: PadMode = "constant", value: int = 0) -> Image.Image:
    """Pad ``img`` to a ``max(w, h)`` square with the content centred (extra pixel bottom/right).

    ``constant`` fills with grey level ``value``; ``edge`` repeats the border pixels;
    ``reflect`` mirrors the content (without repeating the border row/column). ``edge`` and
    ``reflect`` take 8-bit images (L, RGB, RGBA); :func:`load_rgb` output always is one.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode {mode!r} is not one of {', '.join(PAD_MODES)}")
    w, h = img.size
    side = max(w, h)
    if w == h:
        return img.copy()
    left, top = (side - w) // 2, (side - h) // 2
    if mode == "constant":
        fill = value if img.mode in ("L", "I", "F") else (value,) * len(img.getbands())
        out = Image.new(img.mode, (side, side), fill)
        out.paste(img, (left, top))
        return out
    arr = np.asarray(img)
    widths = [(top, side - h - top), (left, side - w - left)] + [(0, 0)] * (arr.ndim - 2)
    # numpy's reflect cannot mirror a 1-pixel-wide axis; edge is the only sensible answer there.
    if mode == "reflect" and min(arr.shape[:2]) == 1:
        mode = "edge"
    return Image.fromarray(np.pad(arr, widths, mode=mode))


def square_template(
    path: str | Path, size: int, pad: PadMode = "constant", pad_value: int = 0
) -> Image.Image:
    """Reference photo as a ``size`` x ``size`` RGB image: longest side scaled to ``size``
    (up or down, aspect kept), then padded to a square with the content centred."""
    img = load_rgb(path, max_side=size, background=pad_value)
    if max(img.size) != size:  # only smaller photos get here: enlarge them
        img = img.resize(_fit(img.size, size), Image.Resampling.LANCZOS)
    out = pad_to_square(img, pad, pad_value)
    if out.size != (size, size):  # cannot happen given _fit; guards the contract callers rely on
        raise AssertionError(f"{path}: template came out {out.size}, expected {size}x{size}")
    return out


__all__ = [
    "PAD_MODES",
    "PadMode",
    "image_size",
    "load_rgb",
    "pad_to_square",
    "square_template",
]
