"""Tests of the classical baseline; :func:`reference_photo` draws the object they look for."""

from __future__ import annotations

import cv2
import numpy as np

#: Plain background colour (RGB) of the reference photos and of the "plain" frames.
BACKGROUND = (96, 112, 80)


def reference_photo(size: int = 64, seed: int = 0) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A square RGB uint8 reference photo [size, size, 3]: an asymmetric textured, multi-coloured
    polygon on the plain :data:`BACKGROUND`, and the polygon's box (x1, y1, x2, y2) in photo
    pixels. The polygon spans about the central 70 %, like a real reference photo's object."""
    rng = np.random.default_rng(seed)
    photo = np.zeros((size, size, 3), np.uint8)
    photo[:] = BACKGROUND
    # An irregular hexagon; the uneven radii make it look different at every quarter turn.
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False) + 0.3
    radii = np.array([0.40, 0.33, 0.40, 0.27, 0.38, 0.31]) * size
    pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    pts += size / 2 - (pts.min(0) + pts.max(0)) / 2  # box centred in the photo
    pts = np.round(pts).astype(np.int32)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [pts], 255)
    # Diagonal stripes in two colours plus a corner patch in a third: texture for the correlation.
    yy, xx = np.mgrid[:size, :size]
    stripes = ((xx + 2 * yy) // max(2, size // 10)) % 2 == 0
    body = np.where(stripes[..., None], (220, 60, 40), (40, 70, 200)).astype(np.uint8)
    body[: size // 2, size // 2 :] = (250, 220, 30)
    body = np.clip(body.astype(np.int16) + rng.integers(-12, 13, body.shape), 0, 255).astype(np.uint8)
    photo[mask > 0] = body[mask > 0]
    ys, xs = np.nonzero(mask)
    return photo, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def paste(frame: np.ndarray, patch: np.ndarray, x: int, y: int) -> np.ndarray:
    """``frame`` with ``patch`` copied unchanged at top-left (x, y) (a new array)."""
    out = frame.copy()
    out[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
    return out


def iou(a, b) -> float:
    """IoU of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
