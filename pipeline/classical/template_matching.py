"""OpenCV template matching (``TM_CCOEFF_NORMED``) over a small bank of scaled and rotated
reference crops: the field's classical answer to "where is this object in the frame?".

Each reference photo becomes a bank of grayscale templates: rotate it about its centre, keep the
central ``crop`` share of each side (the object fills the centre ~60-85 % of a reference photo;
the photo's own background would only spoil the correlation), then resize by each scale. A frame
is searched with every template and the single best correlation peak wins.

Conventions: images are HxW(x3) arrays, RGB uint8 or gray float32; boxes are ``(x1, y1, x2, y2)``
in pixels of the searched frame, pixel ``i`` covering ``[i, i + 1)``; angles are degrees,
counter-clockwise as displayed (OpenCV's and ``np.rot90``'s sense).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: Templates whose shorter side would be under this many pixels are dropped: a handful of pixels
#: correlates with almost anything.
MIN_SIDE = 6
#: Templates with a gray-level standard deviation under this are dropped as "flat": OpenCV scores
#: a flat template 1.0 everywhere (0/0). Flat frame windows need nothing: OpenCV scores them 0.
FLAT_STD = 1.0


@dataclass(frozen=True)
class Template:
    """One entry of a template bank: ``image`` [h, w] float32 gray (0-255), made from reference
    photo ``source`` rotated by ``rotation`` degrees and resized by ``scale``."""

    image: np.ndarray
    source: int
    scale: float
    rotation: float


@dataclass(frozen=True)
class Match:
    """The best match in a frame: ``box`` (x1, y1, x2, y2) frame pixels, ``score`` the
    ``TM_CCOEFF_NORMED`` peak clipped to [0, 1], ``template`` the winning :class:`Template`."""

    box: tuple[float, float, float, float]
    score: float
    template: Template


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] (or already gray [H, W]) -> gray float32 [H, W], 0-255."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return image.astype(np.float32, copy=False)


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate a gray [H, W] image about its centre, counter-clockwise.

    Multiples of 90 are exact (``np.rot90``; H and W swap). Other angles keep the input size
    (``cv2.warpAffine``, bilinear, border replicated), the photo's full extent and no mask: a
    :func:`central_crop` of a square photo then holds only photo pixels at any angle when its
    share is at most 1/sqrt(2) ~ 0.707; larger crops get replicated edge pixels in their corners.
    """
    angle = float(degrees) % 360.0
    quarter, rest = divmod(angle, 90.0)
    if rest == 0.0:
        return np.ascontiguousarray(np.rot90(image, int(quarter)))
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def central_crop(image: np.ndarray, share: float) -> np.ndarray:
    """The centred part of an [H, W, ...] image, at most ``share`` of each side.

    Each kept side is ``share * side`` rounded down to the parity of the full side: the crop is
    then centred exactly (cropping commutes with quarter turns) and never larger than asked.
    """
    h, w = image.shape[:2]
    # The 1e-9 keeps float fuzz (0.3 * 60 = 17.999...) from costing two pixels.
    ch, cw = (max(side - 2 * math.ceil(side * (1.0 - share) / 2 - 1e-9), 2 - side % 2) for side in (h, w))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return image[y0 : y0 + ch, x0 : x0 + cw]


def resize(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize by ``scale`` (area filter when shrinking, bilinear when enlarging)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def prepare_templates(
    images: Sequence[np.ndarray],
    crop: float,
    scales: Sequence[float],
    rotations: Sequence[float],
) -> list[Template]:
    """The template bank of one object's reference photos.

    images: reference photos, RGB uint8 [H, W, 3] (or gray [H, W]); on disk they are the
        ``templates.size`` squares written by ``resize_templates``.
    crop: central share of each side kept (``baseline.template_crop``, see :func:`central_crop`),
        taken after rotating.
    scales: resize factors of the reference photo (``baseline.scales``): the whole photo would
        be ``scale * side`` pixels at search size, so a template is about ``scale * crop * side``
        pixels a side. With 64 px templates, crop 0.7 and scale 0.75: 44 * 0.75 = 33 px.
    rotations: degrees, counter-clockwise (``baseline.rotations``).

    Returns ``len(images) * len(rotations) * len(scales)`` templates, fewer where one would be
    under :data:`MIN_SIDE` pixels or flat (nothing to correlate).
    """
    bank = []
    for source, image in enumerate(images):
        gray = to_gray(image)
        for degrees in rotations:
            # Rotate the whole photo, then crop: the crop stays the same size at every angle and
            # (crop <= 0.707) holds no pixels from outside the photo.
            cropped = central_crop(rotate(gray, degrees), crop)
            for scale in scales:
                template = resize(cropped, scale)
                if min(template.shape[:2]) < MIN_SIDE or float(template.std()) < FLAT_STD:
                    continue
                bank.append(Template(np.ascontiguousarray(template), source, float(scale), float(degrees)))
    return bank


def match(frame_gray: np.ndarray, templates: Sequence[Template]) -> Match | None:
    """The best ``TM_CCOEFF_NORMED`` match of any template in a gray float32 frame [H, W].

    Templates larger than the frame in either side are skipped; None when none fits. The score is
    clipped to [0, 1] (negative correlation = no match), the score range of the learned model.
    """
    frame = np.ascontiguousarray(frame_gray, dtype=np.float32)
    fh, fw = frame.shape[:2]
    best: Match | None = None
    for template in templates:
        th, tw = template.image.shape[:2]
        if th > fh or tw > fw:
            continue
        result = cv2.matchTemplate(frame, template.image, cv2.TM_CCOEFF_NORMED)
        _, peak, _, (x, y) = cv2.minMaxLoc(result)
        if best is None or peak > best.score:
            box = (float(x), float(y), float(x + tw), float(y + th))
            best = Match(box, float(peak), template)
    if best is None:
        return None
    return Match(best.box, float(np.clip(best.score, 0.0, 1.0)), best.template)

