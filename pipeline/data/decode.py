"""Full decoding of an image file, to tell good files from unreadable or truncated ones.

Sizes follow :mod:`pipeline.data.imageio`: ``(width, height)`` as displayed, i.e. after the
EXIF orientation, because that is how the training loader sees the frame and its labels.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageFile, ImageOps

_EXIF_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
# What PIL raises for missing, unreadable, truncated or hostile files.
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class BadImage(Exception):
    """The file is not a complete, decodable image; the message says why (without the path)."""


def _check_strict() -> None:
    # With this flag PIL pads truncated files with grey instead of failing: we would miss them.
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on: truncated files would pass")


def decoded_size(path: Path) -> tuple[int, int]:
    """Decode every pixel of ``path`` (``Image.verify`` misses truncated JPEGs) and return its
    displayed ``(width, height)``; raise :class:`BadImage` when that fails."""
    _check_strict()
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
            w, h = img.size
            # libjpeg at 1/8 scale still entropy-decodes every block (so truncation and broken
            # data still fail) but skips most of the IDCT: about twice as fast.
            img.draft(img.mode, (max(1, w // 8), max(1, h // 8)))
            img.load()
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except _READ_ERRORS as exc:
        raise BadImage(f"cannot read image ({exc})") from None
    return (h, w) if orientation in _SWAPPING_ORIENTATIONS else (w, h)


def probe(path: Path) -> tuple[int, int] | str:
    """:func:`decoded_size`, or the reason it failed; for process pools (nothing raised)."""
    try:
        return decoded_size(path)
    except BadImage as exc:
        return str(exc)


def load_upright_rgb(path: Path) -> Image.Image:
    """The decoded image in RGB, turned by its EXIF orientation; :class:`BadImage` on failure."""
    _check_strict()
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except _READ_ERRORS as exc:
        raise BadImage(f"cannot read image ({exc})") from None
