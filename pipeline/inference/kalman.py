"""Constant-velocity Kalman filter on a box's centre and size, as SORT / DeepSORT use it.

State ``[cx, cy, w, h, vcx, vcy, vw, vh]`` (px and px per frame), measurement ``[cx, cy, w, h]``.
Noise scales with the box's size, so one setting fits a 20 px and a 100 px object; ``motion_noise``
multiplies the process noise, the tolerance for motion the model does not explain (a camera that
pans, zooms or shakes). Pure functions on numpy arrays (float64).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# DeepSORT's weights: position std 1/20 and velocity std 1/160 of the box's size per frame.
_STD_POSITION = 1.0 / 20
_STD_VELOCITY = 1.0 / 160
_STD_MEASUREMENT = 1.0 / 20

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)

#: Squared Mahalanobis distance of a measurement that a correct association exceeds 5 % of the
#: time (chi-square, 4 degrees of freedom): DeepSORT's gate.
CHI2_95_4DOF = 9.4877


class Gaussian(NamedTuple):
    """A state estimate: ``mean [8]`` and ``covariance [8, 8]``."""

    mean: np.ndarray
    covariance: np.ndarray


def box_to_measurement(box: np.ndarray) -> np.ndarray:
    """``box [4]`` xyxy -> ``[cx, cy, w, h]``."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64).reshape(4)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)])


def measurement_to_box(z: np.ndarray) -> np.ndarray:
    """``[cx, cy, w, h, ...]`` -> ``box [4]`` xyxy."""
    cx, cy, w, h = np.asarray(z, dtype=np.float64)[:4]
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _size(z: np.ndarray) -> float:
    return float(max(z[2], z[3], 1.0))


def initiate(box: np.ndarray) -> Gaussian:
    """A track started at ``box [4]`` xyxy: its position as measured, velocity unknown."""
    z = box_to_measurement(box)
    s = _size(z)
    std = np.r_[np.full(4, 2 * _STD_POSITION * s), np.full(4, 10 * _STD_VELOCITY * s)]
    return Gaussian(np.r_[z, np.zeros(4)], np.diag(std**2))


def predict(state: Gaussian, motion_noise: float = 1.0) -> Gaussian:
    """One frame ahead; ``motion_noise`` scales the process noise (camera-motion tolerance)."""
    s = _size(state.mean)
    std = motion_noise * np.r_[np.full(4, _STD_POSITION * s), np.full(4, _STD_VELOCITY * s)]
    mean = _F @ state.mean
    mean[2:4] = np.maximum(mean[2:4], 1e-3)
    return Gaussian(mean, _F @ state.covariance @ _F.T + np.diag(std**2))


def _project(state: Gaussian) -> tuple[np.ndarray, np.ndarray]:
    s = _size(state.mean)
    r = np.diag(np.full(4, (_STD_MEASUREMENT * s) ** 2))
    return _H @ state.mean, _H @ state.covariance @ _H.T + r


def update(state: Gaussian, box: np.ndarray) -> Gaussian:
    """The estimate corrected by the measured ``box [4]`` xyxy."""
    z_mean, z_cov = _project(state)
    gain = np.linalg.solve(z_cov, (state.covariance @ _H.T).T).T
    innovation = box_to_measurement(box) - z_mean
    return Gaussian(state.mean + gain @ innovation, state.covariance - gain @ z_cov @ gain.T)


def mahalanobis2(state: Gaussian, box: np.ndarray) -> float:
    """Squared Mahalanobis distance of ``box [4]`` xyxy from the predicted measurement."""
    return float(mahalanobis2_all(state, np.asarray(box).reshape(1, 4))[0])


def mahalanobis2_all(state: Gaussian, boxes: np.ndarray) -> np.ndarray:
    """:func:`mahalanobis2` of each of ``boxes [K, 4]`` xyxy -> ``[K]`` (one projection for all)."""
    z_mean, z_cov = _project(state)
    d = np.stack([box_to_measurement(b) for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]) - z_mean \
        if len(boxes) else np.zeros((0, 4))
    return np.einsum("ki,ki->k", d, np.linalg.solve(z_cov, d.T).T)
