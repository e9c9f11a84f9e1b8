"""Search frames and reference photos as arrays: the sample record, decoding, resizing.

Shared by training (``pipeline.data.dataset``), evaluation and the inference API, which must not
import training-only code (augmentation, torch datasets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.cli import UserError


@dataclass(frozen=True)
class Sample:
    """One search frame and the reference photos of its object."""

    image: str
    object_id: str
    sequence_id: str
    frame_index: int
    box: tuple[float, float, float, float] | None
    templates: tuple[str, ...]
    width: int = 0  # original frame size (0 = unknown: read from the file)
    height: int = 0


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def read_rgb(path: str | Path, reduce: int = 1) -> np.ndarray:
    """Read an image file as HWC uint8 RGB, optionally decoded at 1/``reduce`` size (JPEG DCT
    scaling, much cheaper than a full decode followed by a resize).
    A missing or corrupt file is a UserError naming it."""
    image = cv2.imread(str(path), _REDUCED[reduce])
    if image is None:
        raise UserError(f"{path}: cannot read image (missing, unreadable or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_frame(sample: Sample, search_size: tuple[int, int]) -> tuple[np.ndarray, float, float]:
    """The sample's frame resized to ``search_size`` = (width, height), and the x, y scale factors
    from original pixels. Decodes at the largest reduction that stays at or above the target."""
    reduce = 1
    if sample.width and sample.height:
        while reduce < 8 and sample.width // (reduce * 2) >= search_size[0] and sample.height // (reduce * 2) >= search_size[1]:
            reduce *= 2
    image = read_rgb(sample.image, reduce)
    width, height = (sample.width, sample.height) if sample.width else (image.shape[1], image.shape[0])
    return resize(image, search_size), search_size[0] / width, search_size[1] / height


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` = (width, height) (area filter when shrinking)."""
    h, w = image.shape[:2]
    if (w, h) == tuple(size):
        return image
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA if w > size[0] else cv2.INTER_LINEAR)


def to_tensor_array(image: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> CHW float32 in [0, 1] (the detector normalises with its backbone's stats)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0
