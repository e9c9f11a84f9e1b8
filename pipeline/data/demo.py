"""Built-in deterministic demo data: drone-style search frames plus ground-level reference photos.

:func:`generate_demo` writes a complete data set in the "cpn" on-disk layout::

    out_dir/{train,val}/templates/Class_<id>_ref_<k>.jpg          k = 1, 2, 3; square photos
    out_dir/{train,val}/search/images/Class_<id>_frame_<n>.jpg    1024 x 576 frames
    out_dir/{train,val}/search/labels/Class_<id>_frame_<n>.txt    "0 cx cy w h" or empty

With ``layout: video`` (:func:`generate_demo`, ``data.demo.layout``) the same frames are written
in the drone-video layout of :mod:`pipeline.data.formats.video` instead, one clip per object::

    out_dir/{train,val}/samples/video_<id>/object_images/img_<k>.jpg   the reference photos
    out_dir/{train,val}/samples/video_<id>/drone_video.mp4             25 fps, mp4v (OpenCV)
    out_dir/{train,val}/annotations/annotations.json                   pixel boxes per frame

The clip is the object's sequences one after the other (a cut between them): frame ``i`` of
sequence ``s`` is video frame ``s * frames_per_sequence + i``.

Object ids are ``0 .. val_objects + train_objects - 1``; val holds the first ``val_objects``
identities and train the rest, so no val object is ever seen in training, and the val set (its
identities, frames and distractors) stays the same when ``train_objects`` changes: runs that
differ in training data are scored on the same frames.

Frame numbering convention: frame ``i`` of sequence ``s`` of an object is numbered
``n = s * 1000 + i`` and written zero-padded to 6 digits (``Class_3_frame_001004.jpg`` is frame 4
of sequence 1 of object 3). Frames of one sequence are consecutive; **a gap in the numbering starts
a new sequence**, which is how readers recover sequence ids from file names (hence at most 999
frames per sequence).

What is drawn:

* Each identity is a procedural composite shape (union of 1-3 polygons / ellipses / stars /
  rectangles) with a 2-3 colour palette and a texture (stripes, checks, dots, rings or noise),
  all drawn from one distribution, so only matching the reference photos tells them apart.
* Reference photos: the object fills ~60-85 % of the photo side, each photo with its own
  rotation, foreshortening, directional lighting, brightness / contrast / colour cast, drop
  shadow and background (tilted horizon, gradients, grain, tiles).
* Search frames: a per-sequence aerial background (Voronoi fields with crop rows and hedges, roads,
  buildings, tree clusters with shadows) that pans slowly; the target (long side ~40-96 px) moves
  smoothly, rotates slowly, is squashed by camera tilt and casts a shadow; other identities of the
  same split are distractors at similar sizes; a tree canopy or a pole sometimes covers up to 30 %
  of the target; lighting drifts, frames get motion or defocus blur and sensor noise; about
  ``absent_fraction`` of the frames leave the target out (distractors stay).
* Real-photo textures (``photo_objects``, ``photo_grounds``; 0 = fully procedural): a share of the
  identities is covered by a patch of one of OpenCV's sample photos (``TRAINING_PHOTOS`` in
  :mod:`pipeline.data.real_sources`, none of them a real-photo check set file), and a share of the
  sequences and reference photos stand on a window of one of them instead of the drawn ground.
* Hard negatives (``lookalikes``): in that share of sequences the first distractor has the target's
  outline with another identity's surface, or the target's surface on another outline.
* Long clips (all off by default, each from its own random stream; docs/data.md): absent frames in
  stretches (``absence``, ``absent_stretch``), long occlusions (``occlusion_runs``,
  ``occlusion_length``), look-alikes crossing the target's path (``crossings``), and a camera that
  zooms (``zoom``) and tilts (``tilt``) over the sequence. A one-frame sequence is unchanged by them.

The YOLO box is the tight box of the target's rendered mask (coverage >= 50 % of a pixel) after all
geometric transforms, clipped to the frame; occlusion does not shrink it.

Determinism: every random draw comes from a NumPy generator seeded by (seed, stream, object,
sequence), so the output does not depend on worker count or task order; same seed gives
byte-identical files.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import json
import math
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from pipeline.config import ConfigError, DemoConfig
from pipeline.data.real_sources import TRAINING_PHOTOS, load_training_photos

FRAME_W, FRAME_H = 1024, 576
TEMPLATES_PER_OBJECT = 3
MAX_FRAMES_PER_SEQUENCE = 999  # frame n = s*1000 + i must leave a numbering gap between sequences
TARGET_MIN_SIDE, TARGET_MAX_SIDE = 40.0, 96.0  # long side of the target box in frames, px
MAX_OCCLUSION = 0.30  # at most this share of the target's mask is covered
PAN_MARGIN = 64  # most background canvas margin the camera pan may use, px
SUPERSAMPLE = 2  # objects are rendered at 2x and area-downsampled (anti-aliasing)
PHOTO_WORK_SIZE = 512  # reference photos are composed at most this large, then upscaled

# Random streams: each (stream, ids...) tuple gets its own independent generator.
_STREAM_OBJECT, _STREAM_TEMPLATE, _STREAM_SEQUENCE, _STREAM_NOISE, _STREAM_ABSENT = 1, 2, 3, 4, 5
# Real-photo choices draw from their own streams, so with data.demo.photo_* and lookalikes at 0
# every other draw, and so the data, is what it is without them.
_STREAM_PHOTO_OBJECT, _STREAM_PHOTO_TEMPLATE, _STREAM_PHOTO_SEQUENCE = 6, 7, 8
# Long-clip behaviours (absence in stretches, long occlusions, crossings, camera zoom / tilt) draw
# from their own streams too, so at their defaults the data is what it was before they existed.
_STREAM_ABSENT_STRETCH, _STREAM_OCCLUSION, _STREAM_CROSSING, _STREAM_CAMERA, _STREAM_GROUND = 9, 10, 11, 12, 13

#: Training photos, BGR float32 [H, W, 3]: the textures of photo identities and grounds.
Photos = Sequence[np.ndarray]

# Aerial terrain palettes (RGB; flipped to BGR when used).
_BIOMES: tuple[tuple[tuple[int, int, int], ...], ...] = (
    ((86, 120, 60), (110, 135, 70), (140, 115, 80), (160, 140, 95), (190, 170, 100), (100, 85, 65)),
    ((95, 125, 65), (80, 110, 55), (120, 140, 80), (105, 120, 70), (140, 145, 95)),
    ((185, 160, 120), (170, 145, 105), (200, 180, 140), (150, 130, 100), (165, 150, 120)),
    ((130, 130, 125), (150, 148, 140), (90, 115, 70), (110, 125, 85), (120, 110, 100)),
)
_ROADS = ((120, 120, 115), (150, 145, 135), (90, 90, 92), (165, 145, 110))
_ROOFS = ((150, 70, 60), (120, 120, 125), (90, 90, 95), (180, 170, 160), (110, 80, 60))
_TREES = ((40, 70, 35), (55, 85, 40), (35, 60, 40), (60, 80, 45))
_TEXTURES = ("stripes", "checks", "dots", "rings", "noise")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator per (seed, stream, ids); SeedSequence needs non-negative words."""
    return np.random.default_rng(np.random.SeedSequence([int(seed < 0), abs(int(seed)), *keys]))


def _bgr(rgb: tuple[int, int, int] | np.ndarray) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32)[::-1].copy()


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Smooth value noise (sum of upsampled random grids), roughly zero mean, float32 (h, w)."""
    # Smooth noise is summed at reduced resolution (finest octave still >= 2 px a cell), then
    # upsampled once: same look, a fraction of the full-size passes.
    k = int(max(1, min(8, cell / 2 ** (octaves - 1) / 2)))
    sh, sw = -(-h // k), -(-w // k)
    cell /= k
    out = np.zeros((sh, sw), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        grid = rng.standard_normal((max(2, int(sh / cell) + 2), max(2, int(sw / cell) + 2)))
        out += amp * cv2.resize(grid.astype(np.float32), (sw, sh), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cell /= 2.0
    out /= total
    if k > 1:
        out = cv2.resize(out, (sw * k, sh * k), interpolation=cv2.INTER_LINEAR)[:h, :w]
    return np.ascontiguousarray(out)


def _paste(
    dst: np.ndarray, x0: int, y0: int, colour: np.ndarray | float, alpha: np.ndarray
) -> None:
    """Alpha-blend a patch into ``dst`` (float32 HxWx3) at (x0, y0), clipping to its bounds."""
    h, w = alpha.shape
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + w, dst.shape[1]), min(y0 + h, dst.shape[0])
    if xa >= xb or ya >= yb:
        return
    a = alpha[ya - y0 : yb - y0, xa - x0 : xb - x0, None]
    region = dst[ya:yb, xa:xb]
    if isinstance(colour, np.ndarray) and colour.ndim == 3:
        colour = colour[ya - y0 : yb - y0, xa - x0 : xb - x0]
    region *= 1.0 - a
    region += a * colour


def _shade(dst: np.ndarray, x0: int, y0: int, alpha: np.ndarray, strength: float) -> None:
    """Darken ``dst`` under ``alpha`` (a shadow): multiply by 1 - strength * alpha."""
    _paste(dst, x0, y0, 0.0, alpha * strength)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """Round and saturate a float image to uint8 (negative values must not wrap, hence the max)."""
    return cv2.convertScaleAbs(np.maximum(img, 0, out=img))


# ----------------------------------------------------------------------------------------------
# Object identities
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoFill:
    """An identity whose surface is a patch of a real photo instead of a procedural pattern."""

    photo: int  # index into the training photos (real_sources.TRAINING_PHOTOS)
    centre: tuple[float, float]  # patch centre as fractions of the photo's width and height
    radius: float  # one object unit in photo pixels, as a fraction of the photo's short side
    angle: float  # rotation of the patch, radians


@dataclass
class ObjectSpec:
    """One procedurally generated identity, in object units (union circumradius 1, centred)."""

    object_id: int
    polygons: list[np.ndarray]  # (n, 2) float64 outlines of the parts
    part_colour: np.ndarray  # (parts + 1, 3) BGR float32; row 0 unused (background label)
    accent: np.ndarray  # (3,) BGR float32 colour of the texture pattern
    texture: str
    tex_freq: float  # pattern cycles per object unit
    tex_angle: float
    tex_amount: float  # how far the pattern pulls towards the accent colour
    dot_radius: float
    noise: np.ndarray  # small float32 grid for the "noise" texture
    photo: PhotoFill | None = None  # set: the surface is this photo patch (parts keep their shading)


def _primitive(rng: np.random.Generator, radius: float) -> np.ndarray:
    kind = rng.choice(["polygon", "ellipse", "star", "rect"])
    turn = rng.uniform(0, 2 * math.pi)
    if kind == "polygon":
        n = int(rng.integers(3, 9))
        # Evenly spread angles with jitter keep the polygon from collapsing into a sliver.
        ang = np.linspace(0, 2 * math.pi, n, endpoint=False)
        ang += rng.uniform(-0.3, 0.3, n) * (math.pi / n)
        r = rng.uniform(0.7, 1.0, n)
        pts = np.stack([r * np.cos(ang), r * np.sin(ang)], 1)
    elif kind == "ellipse":
        ang = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        pts = np.stack([np.cos(ang), rng.uniform(0.35, 1.0) * np.sin(ang)], 1)
    elif kind == "star":
        n = int(rng.integers(4, 9))
        ang = np.linspace(0, 2 * math.pi, 2 * n, endpoint=False)
        r = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.4, 0.7))
        pts = np.stack([r * np.cos(ang), r * np.sin(ang)], 1)
    else:
        a = rng.uniform(0.3, 1.0)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]], float) / math.hypot(1, a)
    return (pts @ _rot(turn).T) * radius


def _hsv_bgr(h: float, s: float, v: float) -> np.ndarray:
    """BGR 0-255 float32 from HSV in [0, 1]."""
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return np.array([b, g, r], np.float32) * 255.0


def object_spec(seed: int, object_id: int, photo_objects: float = 0.0) -> ObjectSpec:
    """The identity ``object_id`` of data set ``seed`` (cheap; every worker rebuilds it); a share
    ``photo_objects`` of identities is textured by a patch of a training photo."""
    rng = _rng(seed, _STREAM_OBJECT, object_id)
    parts = [_primitive(rng, 1.0)]
    for _ in range(int(rng.integers(0, 3))):
        ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.35, 0.8)
        offset = dist * np.array([math.cos(ang), math.sin(ang)])
        parts.append(_primitive(rng, rng.uniform(0.35, 0.7)) + offset)
    allv = np.concatenate(parts)
    centre = (allv.min(0) + allv.max(0)) / 2
    scale = np.linalg.norm(allv - centre, axis=1).max()
    parts = [(p - centre) / scale for p in parts]

    # Hues spread around the wheel so a palette's colours stay distinguishable from each other.
    n_col = int(rng.integers(2, 4))
    h0 = rng.uniform(0, 1)
    hues = [(h0 + i / n_col + rng.uniform(-0.08, 0.08)) % 1.0 for i in range(n_col)]
    palette = [_hsv_bgr(h, rng.uniform(0.35, 1.0), rng.uniform(0.3, 1.0)) for h in hues]
    if rng.random() < 0.25:  # some objects are mostly white / black / grey
        palette[int(rng.integers(n_col))] = np.full(3, rng.choice([25.0, 128.0, 235.0]), np.float32)
    part_idx = [0] + [int(rng.integers(0, n_col)) for _ in parts[1:]]
    accent_idx = int(rng.integers(1, n_col))
    part_colour = np.zeros((len(parts) + 1, 3), np.float32)
    for k, idx in enumerate(part_idx):
        part_colour[k + 1] = palette[idx]
    return ObjectSpec(
        object_id=object_id,
        polygons=parts,
        part_colour=part_colour,
        accent=np.asarray(palette[accent_idx], np.float32),
        texture=str(rng.choice(_TEXTURES)),
        tex_freq=float(rng.uniform(1.2, 3.0)),
        tex_angle=float(rng.uniform(0, math.pi)),
        tex_amount=float(rng.uniform(0.6, 1.0)),
        dot_radius=float(rng.uniform(0.2, 0.35)),
        noise=rng.uniform(0, 1, (6, 6)).astype(np.float32),
        photo=_photo_fill(_rng(seed, _STREAM_PHOTO_OBJECT, object_id), photo_objects),
    )


def _photo_fill(rng: np.random.Generator, share: float) -> PhotoFill | None:
    if rng.random() >= share:
        return None
    return PhotoFill(
        photo=int(rng.integers(len(TRAINING_PHOTOS))),
        centre=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8))),
        radius=float(rng.uniform(0.06, 0.3)),
        angle=float(rng.uniform(0, 2 * math.pi)),
    )


def lookalike(target: ObjectSpec, other: ObjectSpec, same_outline: bool) -> ObjectSpec:
    """A hard negative for ``target``: its outline with ``other``'s surface (``same_outline``), or
    its surface on ``other``'s outline. Part colours are cycled onto the new parts."""
    outline, surface = (target, other) if same_outline else (other, target)
    parts = len(surface.part_colour) - 1
    rows = [0] + [1 + k % parts for k in range(len(outline.polygons))]
    return dataclasses.replace(surface, polygons=outline.polygons, part_colour=surface.part_colour[rows])


def _photo_surface(spec: ObjectSpec, photos: Photos, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BGR float32 colour of ``spec``'s photo patch at object coordinates (u, v) ([h, w] each)."""
    fill = spec.photo
    if not photos:
        raise ValueError(f"identity {spec.object_id} is photo-textured but no training photos were given")
    img = photos[fill.photo]
    ph, pw = img.shape[:2]
    r = fill.radius * min(ph, pw)
    c, s = math.cos(fill.angle), math.sin(fill.angle)
    px = (fill.centre[0] * pw + r * (c * u - s * v)).astype(np.float32)
    py = (fill.centre[1] * ph + r * (s * u + c * v)).astype(np.float32)
    return cv2.remap(img, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _photo_crop(rng: np.random.Generator, photos: Photos, h: int, w: int) -> np.ndarray:
    """A random window of a random training photo resized to ``h`` x ``w``, BGR float32: a real ground."""
    img = photos[int(rng.integers(len(photos)))]
    ph, pw = img.shape[:2]
    aspect = w / h
    cw = min(pw, ph * aspect) * rng.uniform(0.5, 1.0)
    ch = cw / aspect
    x0, y0 = rng.uniform(0, pw - cw), rng.uniform(0, ph - ch)
    sx, sy = w / cw, h / ch
    if rng.random() < 0.5:  # mirrored
        m = np.float64([[-sx, 0, sx * (x0 + cw)], [0, sy, -sy * y0]])
    else:
        m = np.float64([[sx, 0, -sx * x0], [0, sy, -sy * y0]])
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _pattern(spec: ObjectSpec, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Texture value in [0, 1] at object coordinates (u, v)."""
    c, s = math.cos(spec.tex_angle), math.sin(spec.tex_angle)
    ru, rv = u * c + v * s, -u * s + v * c
    f = spec.tex_freq * 2 * math.pi
    if spec.texture == "stripes":
        t = 0.5 + 3.0 * np.sin(f * ru)
    elif spec.texture == "checks":
        t = 0.5 + 3.0 * np.sin(f * ru) * np.sin(f * rv)
    elif spec.texture == "dots":
        du = ru * spec.tex_freq - np.floor(ru * spec.tex_freq) - 0.5
        dv = rv * spec.tex_freq - np.floor(rv * spec.tex_freq) - 0.5
        t = (spec.dot_radius - np.sqrt(du * du + dv * dv)) * 12.0 + 0.5
    elif spec.texture == "rings":
        t = 0.5 + 3.0 * np.sin(f * np.sqrt(u * u + v * v))
    else:
        n = spec.noise.shape[0] - 1
        mx = ((u + 1.0) * 0.5 * n).astype(np.float32)
        my = ((v + 1.0) * 0.5 * n).astype(np.float32)
        val = cv2.remap(spec.noise, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        t = (val - 0.5) * 4.0 + 0.5
    return np.clip(t, 0.0, 1.0).astype(np.float32)


def render_object(
    spec: ObjectSpec, affine: np.ndarray, light: tuple[float, float] = (0.0, 0.0), ss: int = 1,
    photos: Photos = (),
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Rasterise ``spec`` under ``affine`` (2x3, object units -> canvas px, pixel centres integer).

    Returns ``(x0, y0, colour, alpha)``: a float32 BGR patch and its coverage in [0, 1] whose
    top-left pixel sits at canvas (x0, y0). ``light`` = (angle in object coords, strength) shades
    the object with a linear gradient; ``ss`` > 1 supersamples for anti-aliasing. ``photos``: the
    training photos, needed when ``spec`` is photo-textured.
    """
    lin, t = affine[:, :2], affine[:, 2]
    verts = [p @ lin.T + t for p in spec.polygons]
    allv = np.concatenate(verts)
    x0, y0 = int(math.floor(allv[:, 0].min())) - 1, int(math.floor(allv[:, 1].min())) - 1
    x1, y1 = int(math.ceil(allv[:, 0].max())) + 2, int(math.ceil(allv[:, 1].max())) + 2
    w, h = x1 - x0, y1 - y0
    # Supersampled pixel j covers canvas x0 + (j - (ss-1)/2) / ss, so area-downsampling lines up.
    off = (ss - 1) / 2.0
    labels = np.zeros((h * ss, w * ss), np.uint8)
    for k, v in enumerate(verts):
        pts = np.round(((v - (x0, y0)) * ss + off) * 16).astype(np.int32)
        cv2.fillPoly(labels, [pts], k + 1, lineType=cv2.LINE_8, shift=4)

    inv = cv2.invertAffineTransform(affine.astype(np.float64))
    xs = (x0 + (np.arange(w * ss) - off) / ss).astype(np.float32)[None, :]
    ys = (y0 + (np.arange(h * ss) - off) / ss).astype(np.float32)[:, None]
    u = inv[0, 0] * xs + inv[0, 1] * ys + np.float32(inv[0, 2])
    v = inv[1, 0] * xs + inv[1, 1] * ys + np.float32(inv[1, 2])
    if spec.photo is not None:
        # Parts stay visible as a brightness step, as painted panels of one real object would.
        gain = 0.8 + 0.4 * spec.part_colour.mean(1) / 255.0
        colour = _photo_surface(spec, photos, u, v) * gain.astype(np.float32)[labels][..., None]
    else:
        t_pat = _pattern(spec, u, v) * np.float32(spec.tex_amount)
        base = spec.part_colour[labels]
        colour = base + (spec.accent - base) * t_pat[..., None]
    ang, strength = light
    shading = 1.0 + strength * (u * math.cos(ang) + v * math.sin(ang))
    alpha = (labels > 0).astype(np.float32)
    colour *= (shading * alpha)[..., None]  # premultiplied, so downsampling does not bleed black
    if ss > 1:
        colour = cv2.resize(colour, (w, h), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_AREA)
        colour /= np.maximum(alpha, 1e-6)[..., None]
    return x0, y0, colour, alpha


def _view(theta: float, squash: float, tilt: float) -> np.ndarray:
    """Linear part at unit scale: in-plane rotation, then foreshortening along the ``tilt`` axis."""
    return _rot(tilt) @ np.diag([1.0, squash]) @ _rot(-tilt) @ _rot(theta)


def _extent(spec: ObjectSpec, lin: np.ndarray) -> np.ndarray:
    """Width and height of the object's outline under ``lin``."""
    allv = np.concatenate(spec.polygons) @ lin.T
    return allv.max(0) - allv.min(0)


# ----------------------------------------------------------------------------------------------
# Reference photos
# ----------------------------------------------------------------------------------------------


def _photo_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ground-level backdrop: wall / floor split by a tilted horizon, gradients, grain, tiles."""
    yy = np.linspace(0, 1, size, dtype=np.float32)[:, None]
    xx = np.linspace(0, 1, size, dtype=np.float32)[None, :]
    cols = [
        _hsv_bgr(rng.uniform(0, 1), rng.uniform(0.0, 0.5), rng.uniform(0.2, 0.95)) for _ in range(4)
    ]
    wall = cols[0] + (cols[1] - cols[0]) * yy[..., None]
    floor = cols[2] + (cols[3] - cols[2]) * yy[..., None]
    if rng.random() < 0.7:
        line = rng.uniform(0.2, 0.7) + rng.uniform(-0.2, 0.2) * (xx - 0.5)
        m = np.clip((yy - line) * size / 3.0, 0, 1)[..., None]
    else:
        m = np.zeros((size, size, 1), np.float32)
    img = wall * (1 - m) + floor * m
    img *= (1.0 + 0.12 * _noise(rng, size, size, size / 6.0, 3))[..., None]
    grain_kind = rng.integers(0, 3)
    if grain_kind == 0:  # wood / fabric grain: noise stretched along one axis
        g = rng.standard_normal((max(2, size // 64), max(2, size // 4))).astype(np.float32)
        g = cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC)
        img *= (1.0 + 0.06 * g * m[..., 0] + 0.02 * g)[..., None]
    elif grain_kind == 1:  # floor tiles
        period = size / rng.uniform(4, 12)
        grid = ((xx * size) % period < 2) | ((yy * size) % period < 2)
        img *= (1.0 - 0.25 * grid * m[..., 0])[..., None]
    img *= (1.0 + 0.05 * _noise(rng, size, size, 6.0, 2))[..., None]
    return img.astype(np.float32)


def render_templates(seed: int, cfg: DemoConfig, object_id: int, photos: Photos = ()) -> list[np.ndarray]:
    """The object's reference photos as BGR uint8 arrays (square, ``cfg.template_size`` a side);
    ``photos``: the training photos (for photo identities and ``cfg.photo_grounds``)."""
    spec = object_spec(seed, object_id, cfg.photo_objects)
    rng = _rng(seed, _STREAM_TEMPLATE, object_id)
    photo_rng = _rng(seed, _STREAM_PHOTO_TEMPLATE, object_id)
    size = cfg.template_size
    # Scene and lighting are rendered at <= PHOTO_WORK_SIZE and upscaled once (4x less work for the
    # default 1024 px); the sensor noise is added at full size so the photo still looks native.
    work = min(size, PHOTO_WORK_SIZE)
    ramp = np.linspace(-1, 1, work, dtype=np.float32)
    r2 = (ramp[:, None] ** 2 + ramp[None, :] ** 2) / 2
    refs = []
    for _ in range(TEMPLATES_PER_OBJECT):
        img = _photo_background(rng, work)
        if photo_rng.random() < cfg.photo_grounds:
            img = _photo_crop(photo_rng, photos, work, work)
        lin = _view(rng.uniform(0, 2 * math.pi), rng.uniform(0.7, 1.0), rng.uniform(0, math.pi))
        lin = lin * (rng.uniform(0.6, 0.85) * work / _extent(spec, lin).max())
        margin = _extent(spec, lin) / 2 + 0.03 * work
        centre = rng.uniform(margin, work - margin)
        sun = rng.uniform(0, 2 * math.pi)
        light = (sun - math.atan2(lin[1, 0], lin[0, 0]), rng.uniform(0.1, 0.3))
        affine = np.hstack([lin, centre[:, None]])
        x0, y0, colour, alpha = render_object(spec, affine, light, SUPERSAMPLE, photos)
        shadow = cv2.GaussianBlur(alpha, (0, 0), 0.015 * work + 0.5)
        d = rng.uniform(0.01, 0.04) * work * np.array([math.cos(sun), math.sin(sun)])
        _shade(img, x0 - int(round(d[0])), y0 - int(round(d[1])), shadow, rng.uniform(0.3, 0.5))
        _paste(img, x0, y0, colour, alpha)

        gain, contrast = rng.uniform(0.65, 1.3), rng.uniform(0.75, 1.25)
        cast = rng.uniform(0.88, 1.12, 3).astype(np.float32)
        img *= np.float32(gain * contrast) * cast
        img += np.float32(128.0 * (1.0 - contrast) * gain) * cast
        img *= (1.0 - rng.uniform(0, 0.35) * r2)[..., None]  # lens vignetting
        sigma = rng.uniform(0, 1.2) * work / 1024
        if sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        if work < size:
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
        img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(1, 4))
        refs.append(_to_uint8(img))
    return refs


# ----------------------------------------------------------------------------------------------
# Aerial search frames
# ----------------------------------------------------------------------------------------------


def _aerial_background(rng: np.random.Generator, h: int, w: int, sun: np.ndarray) -> np.ndarray:
    """Farmland-like ground seen from above: Voronoi fields, roads, buildings, trees (uint8 BGR)."""
    palette = [_bgr(c) for c in _BIOMES[int(rng.integers(len(_BIOMES)))]]
    n = int(rng.integers(6, 20))
    px, py = rng.integers(0, w, n), rng.integers(0, h, n)
    src = np.full((h, w), 255, np.uint8)
    src[py, px] = 0
    _, lab = cv2.distanceTransformWithLabels(src, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(int(lab.max()) + 1, np.int32)
    lut[lab[py, px]] = np.arange(n)
    cell = lut[lab]

    col = np.stack([palette[i] for i in rng.integers(0, len(palette), n)])
    col *= rng.uniform(0.85, 1.15, (n, 3))
    ang = rng.uniform(0, math.pi, n)
    freq = (2 * math.pi / rng.uniform(4, 11, n)).astype(np.float32)
    amp = np.where(rng.random(n) < 0.55, rng.uniform(0.04, 0.14, n), 0.0).astype(np.float32)
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    cos_c, sin_c = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    rows = np.sin((xx * cos_c[cell] + yy * sin_c[cell]) * freq[cell]) * amp[cell]  # crop rows
    img = col.astype(np.float32)[cell]
    img *= (1.0 + rows + 0.12 * _noise(rng, h, w, 120.0, 3))[..., None]
    # A faint hue drift towards green/brown keeps large fields from looking flat.
    tint = np.array([-0.5, 1.0, 0.6], np.float32) * np.float32(rng.uniform(-1, 1))
    img += (8.0 * _noise(rng, h, w, 60.0, 2))[..., None] * tint
    if rng.random() < 0.6:  # hedges / ditches along field borders
        edge = np.zeros((h, w), np.uint8)
        edge[1:] |= (cell[1:] != cell[:-1]).astype(np.uint8)
        edge[:, 1:] |= (cell[:, 1:] != cell[:, :-1]).astype(np.uint8)
        edge = cv2.dilate(edge, np.ones((int(rng.integers(2, 6)),) * 2, np.uint8))
        hedge = _bgr(_TREES[int(rng.integers(len(_TREES)))])
        img[edge > 0] = hedge * 0.8 + img[edge > 0] * 0.2
    out = _to_uint8(img)

    for _ in range(int(rng.integers(0, 4))):  # roads: cubic Bezier curves edge to edge
        p = rng.uniform([0, 0], [w, h], (4, 2))
        if rng.random() < 0.5:
            p[0, 0], p[3, 0] = 0, w
        else:
            p[0, 1], p[3, 1] = 0, h
        t = np.linspace(0, 1, 80)[:, None]
        u = 1 - t
        curve = u**3 * p[0] + 3 * u**2 * t * p[1] + 3 * u * t**2 * p[2] + t**3 * p[3]
        pts = np.round(curve * 4).astype(np.int32)
        road = tuple(int(c) for c in _bgr(_ROADS[int(rng.integers(len(_ROADS)))]))
        cv2.polylines(out, [pts], False, road, int(rng.integers(5, 15)), cv2.LINE_AA, shift=2)
        if rng.random() < 0.4:
            cv2.polylines(out, [pts], False, (200, 200, 200), 1, cv2.LINE_AA, shift=2)

    # Shadows go into one mask first so overlapping shadows do not darken twice.
    shade = np.zeros((h, w), np.uint8)
    bodies: list[tuple[str, tuple, tuple[int, ...]]] = []
    for _ in range(int(rng.integers(0, 14))):
        c = rng.uniform([0, 0], [w, h])
        box = cv2.boxPoints(((c[0], c[1]), tuple(rng.uniform(10, 36, 2)), rng.uniform(0, 180)))
        off = sun * rng.uniform(3, 8)
        cv2.fillPoly(shade, [np.round((box + off) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        roof_bgr = _bgr(_ROOFS[int(rng.integers(len(_ROOFS)))]) * rng.uniform(0.85, 1.15)
        roof = tuple(int(x) for x in roof_bgr)
        bodies.append(("box", (np.round(box * 16).astype(np.int32),), roof))
    for _ in range(int(rng.integers(0, 9))):
        c, spread = rng.uniform([0, 0], [w, h]), rng.uniform(10, 60)
        k = int(rng.integers(5, 60))
        centres = c + rng.normal(0, spread, (k, 2))
        radii = rng.uniform(2.5, 8, k)
        tones = rng.integers(0, len(_TREES), k)
        jitter = rng.uniform(0.8, 1.2, k)
        for ctr, r, tone, j in zip(centres, radii, tones, jitter):
            sc = np.round((ctr + sun * r * 0.8) * 4).astype(int)
            cv2.circle(shade, (int(sc[0]), int(sc[1])), int(r * 4), 255, -1, cv2.LINE_AA, 2)
            colour = tuple(int(x) for x in np.clip(_bgr(_TREES[tone]) * j, 0, 255))
            bodies.append(("tree", (np.round(ctr * 4).astype(int), int(r * 4)), colour))
    if bodies:
        dark = 1.0 - (0.45 / 255.0) * shade.astype(np.float32)
        out = _to_uint8(out.astype(np.float32) * dark[..., None])
        for kind, geo, colour in bodies:
            if kind == "box":
                cv2.fillPoly(out, list(geo), colour, cv2.LINE_AA, 4)
            else:
                centre = (int(geo[0][0]), int(geo[0][1]))
                cv2.circle(out, centre, geo[1], colour, -1, cv2.LINE_AA, 2)

    grain = 1.0 + 0.05 * _noise(rng, h, w, 3.0, 2)
    return _to_uint8(cv2.GaussianBlur(out.astype(np.float32) * grain[..., None], (0, 0), 0.7))


@dataclass
class _Track:
    """One object's path through a sequence."""

    spec: ObjectSpec
    centres: np.ndarray  # (F, 2) screen positions
    thetas: np.ndarray  # (F,) in-plane rotation
    sides: np.ndarray  # (F,) wanted long side of the box, px
    light: float  # shading strength


def _trajectory(
    rng: np.random.Generator, frames: int, side: float, cam_v: np.ndarray
) -> np.ndarray:
    """Smooth screen path: own velocity turning slowly, minus the camera pan, bounced at edges."""
    lo = np.full(2, 0.6 * side + 6)
    hi = np.array([FRAME_W, FRAME_H]) - lo
    p = rng.uniform(lo, hi)
    speed = rng.uniform(0, 9) if rng.random() < 0.8 else 0.0
    heading, turn = rng.uniform(0, 2 * math.pi), rng.normal(0, 0.08)
    own = speed * np.array([math.cos(heading), math.sin(heading)])
    out = np.empty((frames, 2))
    for i in range(frames):
        out[i] = p
        screen_v = own - cam_v
        p = p + screen_v
        for d in range(2):
            if p[d] < lo[d] or p[d] > hi[d]:
                p[d] = np.clip(2 * np.clip(p[d], lo[d], hi[d]) - p[d], lo[d], hi[d])
                screen_v[d] = -screen_v[d]
        own = _rot(turn) @ (screen_v + cam_v)
    return out


def _make_track(
    rng: np.random.Generator, spec: ObjectSpec, frames: int, side: float, cam_v: np.ndarray
) -> _Track:
    theta0, omega = rng.uniform(0, 2 * math.pi), rng.uniform(-1, 1) * math.radians(4)
    # Altitude changes: the apparent size breathes by up to 8 % over the sequence.
    phase = np.arange(frames) * rng.uniform(0.1, 0.4) + rng.uniform(0, 6.3)
    drift = 1.0 + rng.uniform(0, 0.08) * np.sin(phase)
    return _Track(
        spec=spec,
        centres=_trajectory(rng, frames, side, cam_v),
        thetas=theta0 + omega * np.arange(frames),
        sides=side * drift,
        light=float(rng.uniform(0.1, 0.3)),
    )


def _affine(track: _Track, i: int, squash: float, tilt: float) -> np.ndarray:
    """Object -> frame transform at frame ``i``; scale keeps the box long side in range."""
    lin = _view(track.thetas[i], squash, tilt)
    long1 = _extent(track.spec, lin).max()
    side = float(np.clip(track.sides[i], TARGET_MIN_SIDE, TARGET_MAX_SIDE))
    return np.hstack([lin * (side / long1), track.centres[i][:, None]])


@dataclass
class DemoFrame:
    """One rendered search frame before JPEG encoding."""

    index: int  # position in the sequence
    image: np.ndarray  # BGR uint8 (FRAME_H, FRAME_W, 3)
    box: tuple[int, int, int, int] | None  # target x1, y1, x2, y2 (pixel edges); None = absent
    mask: np.ndarray | None  # bool (FRAME_H, FRAME_W): target pixels before occlusion


def absent_frames(seed: int, cfg: DemoConfig, object_id: int, sequence: int) -> frozenset[int]:
    """Indices of the frames of a sequence that leave the target out.

    Stochastic rounding of ``absent_fraction * frames`` keeps the expected share exact even for
    short sequences. ``absence: stretches`` groups them into runs of about ``absent_stretch``.
    """
    rng = _rng(seed, _STREAM_ABSENT, object_id, sequence)
    frames = frames_per_sequence(cfg, object_id)
    n = min(int(math.floor(cfg.absent_fraction * frames + rng.uniform())), frames)
    if cfg.absence == "stretches":
        # Same count draw as scattered, placement from its own stream: a one-frame sequence is
        # absent in both modes or in neither, so single-frame training data does not change.
        stretch_rng = _rng(seed, _STREAM_ABSENT_STRETCH, object_id, sequence)
        return frozenset(_stretches(stretch_rng, frames, n, cfg.absent_stretch))
    return frozenset(rng.choice(frames, n, replace=False).tolist())


def _stretches(rng: np.random.Generator, frames: int, n: int, mean: int) -> list[int]:
    """``n`` of ``frames`` indices as about ``n / mean`` (0.5-1.5 times) separate runs at random places."""
    if n == 0:
        return []
    k = min(max(1, round(n / mean * rng.uniform(0.5, 1.5))), n, frames - n + 1)  # k - 1 present frames between
    cuts = np.sort(rng.choice(np.arange(1, n), k - 1, replace=False)) if k > 1 else np.zeros(0, int)
    lengths = np.diff([0, *cuts.tolist(), n])
    # Stars and bars: the frames - n present frames fall into k + 1 gaps, the inner ones >= 1.
    free = frames - n - (k - 1)
    bars = np.sort(rng.choice(free + k, k, replace=False))
    gaps = np.diff([-1, *bars.tolist(), free + k]) - 1
    gaps[1:-1] += 1
    out, i = [], int(gaps[0])
    for length, gap in zip(lengths, gaps[1:]):
        out.extend(range(i, i + int(length)))
        i += int(length) + int(gap)
    return out


def _long_occlusions(seed: int, cfg: DemoConfig, object_id: int, sequence: int, frames: int) -> dict[int, dict]:
    """Frame -> occluder of the ``occlusion_runs`` long occlusions of a sequence (none in a still)."""
    if cfg.occlusion_runs == 0 or frames < 2:
        return {}
    rng = _rng(seed, _STREAM_OCCLUSION, object_id, sequence)
    out: dict[int, dict] = {}
    for _ in range(cfg.occlusion_runs):
        length = int(np.clip(round(cfg.occlusion_length * rng.uniform(0.5, 1.5)), 1, frames))
        start = int(rng.integers(0, frames - length + 1))
        occ = _occluder(rng)
        out.update(dict.fromkeys(range(start, start + length), occ))
    return out


def _camera(seed: int, cfg: DemoConfig, object_id: int, sequence: int, frames: int, axis: float) -> np.ndarray | None:
    """Per-frame 2x2 linear map about the frame centre (zoom, tilt), or None when the camera keeps still.

    Frame 0 is the identity, so a single-frame sequence looks as it does without zoom and tilt.
    The zoom goes smoothly to ``(1 + zoom) ** +-1`` at the last frame (in or out); the tilt
    foreshortens along ``axis`` down to ``1 - tilt`` mid-clip and back.
    """
    if (cfg.zoom == 0 and cfg.tilt == 0) or frames < 2:
        return None
    rng = _rng(seed, _STREAM_CAMERA, object_id, sequence)
    t = np.arange(frames) / (frames - 1)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    scale = (1.0 + cfg.zoom) ** (direction * t * t * (3 - 2 * t))  # smoothstep: starts and stops gently
    squash = 1.0 - cfg.tilt * np.sin(math.pi * t)
    axis_rot = _rot(axis)
    return np.stack([s * axis_rot @ np.diag([1.0, f]) @ axis_rot.T for s, f in zip(scale, squash)])


def _crossing_tracks(
    seed: int, cfg: DemoConfig, object_id: int, sequence: int, target: _Track, split_ids: Sequence[int],
    absent: frozenset[int], camera: np.ndarray | None,
) -> list[_Track]:
    """Look-alikes that pass over the target's path, one per ``crossings``, spread over the clip.

    Each is the target's outline on another identity's surface or the target's surface on another
    outline (alternately), moving in a straight line that meets the target at a frame where the
    target is drawn and in view.
    """
    frames = len(target.centres)
    others = [o for o in split_ids if o != object_id]
    if cfg.crossings == 0 or frames < 2 or not others:
        return []
    rng = _rng(seed, _STREAM_CROSSING, object_id, sequence)
    centres = target.centres
    if camera is not None:  # where the camera shows it: a zoom-in may carry it out of view
        mid = np.array([FRAME_W / 2, FRAME_H / 2])
        centres = mid + np.einsum("fij,fj->fi", camera, centres - mid)
    inside = (centres >= 0).all(1) & (centres < (FRAME_W, FRAME_H)).all(1)
    present = np.array([i for i in range(frames) if i not in absent and inside[i]] or range(frames))
    same_outline = rng.random() < 0.5
    tracks = []
    for c in range(cfg.crossings):
        # One crossing per equal share of the present frames, so they spread over the clip.
        lo, hi = len(present) * c // cfg.crossings, len(present) * (c + 1) // cfg.crossings
        at = int(present[int(rng.integers(lo, max(hi, lo + 1)))])
        other = object_spec(seed, int(rng.choice(others)), cfg.photo_objects)
        spec = lookalike(target.spec, other, same_outline ^ bool(c % 2))
        side = float(target.sides[at] * rng.uniform(0.85, 1.15))
        offset = rng.uniform(-0.25, 0.25, 2) * side  # boxes overlap at the crossing frame
        heading, speed = rng.uniform(0, 2 * math.pi), rng.uniform(2.0, 6.0)
        velocity = speed * np.array([math.cos(heading), math.sin(heading)])
        steps = np.arange(frames) - at
        tracks.append(_Track(
            spec=spec,
            centres=target.centres[at] + offset + steps[:, None] * velocity,
            thetas=rng.uniform(0, 2 * math.pi) + rng.uniform(-1, 1) * math.radians(4) * steps,
            sides=np.full(frames, side),
            light=float(rng.uniform(0.1, 0.3)),
        ))
    return tracks


def _occluder(rng: np.random.Generator) -> dict:
    """Parameters of a tree canopy or pole that covers the target for a run of frames."""
    kind = "canopy" if rng.random() < 0.6 else "pole"
    colour = _TREES[int(rng.integers(len(_TREES)))] if kind == "canopy" else (70, 65, 60)
    return {
        "kind": kind,
        "angle": rng.uniform(0, 2 * math.pi),
        "dist": rng.uniform(0.3, 0.6),
        "size": rng.uniform(0.25, 0.5),
        "blobs": rng.uniform(-0.5, 0.5, (int(rng.integers(3, 7)), 3)),
        "colour": _bgr(colour) * np.float32(rng.uniform(0.8, 1.2)),
    }


def _draw_occluder(
    img: np.ndarray, occ: dict, mask: np.ndarray, box: tuple[int, int, int, int]
) -> None:
    """Draw ``occ`` near the target, shrunk until it covers at most MAX_OCCLUSION of ``mask``."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    pad = side
    ox, oy = max(x1 - pad, 0), max(y1 - pad, 0)
    ex, ey = min(x2 + pad, FRAME_W), min(y2 + pad, FRAME_H)
    target = mask[oy:ey, ox:ex]
    total = int(target.sum())
    cx = (x1 + x2) / 2 + occ["dist"] * side * math.cos(occ["angle"]) - ox
    cy = (y1 + y2) / 2 + occ["dist"] * side * math.sin(occ["angle"]) - oy
    scale = occ["size"] * side
    for _ in range(10):
        shape = np.zeros(target.shape, np.uint8)
        if occ["kind"] == "canopy":
            for bx, by, br in occ["blobs"]:
                r = max(1, int(round(scale * (0.6 + 0.4 * br))))
                centre = (int(round(cx + bx * scale)), int(round(cy + by * scale)))
                cv2.circle(shape, centre, r, 1, -1, cv2.LINE_8)
        else:
            d = np.array([math.cos(occ["angle"] + 1.5), math.sin(occ["angle"] + 1.5)]) * 3 * side
            a, b = np.round([cx, cy] - d).astype(int), np.round([cx, cy] + d).astype(int)
            width = max(1, int(round(scale * 0.5)))
            cv2.line(shape, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1, width, cv2.LINE_8)
        if total == 0 or (shape.astype(bool) & target).sum() <= MAX_OCCLUSION * total:
            break
        scale *= 0.75
    else:
        return  # never got small enough: skip rather than hide too much
    alpha = cv2.GaussianBlur(shape.astype(np.float32), (0, 0), 0.6)
    # Soft edges spread alpha; cap it to the counted shape's 1-px dilation so coverage stays true.
    _paste(img, ox, oy, occ["colour"], alpha * (cv2.dilate(shape, np.ones((3, 3), np.uint8)) > 0))


def render_sequence(
    seed: int, cfg: DemoConfig, object_id: int, sequence: int, *, draw_target: bool = True, photos: Photos = ()
) -> Iterator[DemoFrame]:
    """Render one sequence of ``object_id``'s search frames.

    ``draw_target=False`` renders the identical frames with the target left out (its mask and box
    are still reported), which lets tests compare the label with what was actually drawn.
    ``photos``: the training photos (for photo identities and ``cfg.photo_grounds``).
    """
    n_val = cfg.val_objects
    split_ids = range(n_val) if object_id < n_val else range(n_val, n_val + cfg.train_objects)
    rng = _rng(seed, _STREAM_SEQUENCE, object_id, sequence)
    noise_rng = _rng(seed, _STREAM_NOISE, object_id, sequence)
    frames = frames_per_sequence(cfg, object_id)

    # Camera: pan, tilt (foreshortening axis and amount), sun, lighting drift, sensor noise.
    max_pan = min(4.0, 2 * PAN_MARGIN / max(frames - 1, 1) - 0.01)
    cam_ang = rng.uniform(0, 2 * math.pi)
    cam_v = rng.uniform(0, max_pan) * np.array([math.cos(cam_ang), math.sin(cam_ang)])
    tilt = rng.uniform(0, math.pi)
    squash = rng.uniform(0.6, 1.0) + 0.03 * np.sin(np.arange(frames) * 0.3 + rng.uniform(0, 6.3))
    squash = np.clip(squash, 0.55, 1.0)
    sun_ang = rng.uniform(0, 2 * math.pi)
    sun = np.array([math.cos(sun_ang), math.sin(sun_ang)])
    phase = np.arange(frames) * 0.35 + rng.uniform(0, 6.3)
    gain = rng.uniform(0.75, 1.2) * (1 + rng.uniform(0, 0.12) * np.sin(phase))
    contrast = rng.uniform(0.85, 1.15)
    cast = rng.uniform(0.92, 1.08, 3).astype(np.float32)
    noise_sigma = np.float32(rng.uniform(1.5, 5.0))
    # The background canvas is only as much larger than a frame as this sequence's pan needs.
    margin = int(math.ceil(np.abs(cam_v).max() * (frames - 1) / 2)) + 2
    camera = _camera(seed, cfg, object_id, sequence, frames, tilt)
    centre = np.array([FRAME_W / 2, FRAME_H / 2])
    extra = np.zeros(2, int)  # x, y: more ground for a camera that zooms out or tilts
    if camera is not None:
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * centre
        seen = np.concatenate([corners @ np.linalg.inv(lin).T for lin in camera])
        extra = np.ceil(np.maximum(np.abs(seen).max(0) - centre, 0)).astype(int)
    canvas_h, canvas_w = FRAME_H + 2 * (margin + extra[1]), FRAME_W + 2 * (margin + extra[0])
    # Drawn even where a photo ground replaces it: its draws keep the sequence's stream, and so the
    # procedural data, as they are without photos.
    bg = _aerial_background(rng, FRAME_H + 2 * margin, FRAME_W + 2 * margin, sun)
    if extra.any():
        # The larger ground a moving camera needs comes from its own stream, after the still one
        # is drawn: the objects and their paths are those of the still camera's clip.
        bg = _aerial_background(_rng(seed, _STREAM_GROUND, object_id, sequence), canvas_h, canvas_w, sun)
    photo_rng = _rng(seed, _STREAM_PHOTO_SEQUENCE, object_id, sequence)
    if photo_rng.random() < cfg.photo_grounds:
        bg = _to_uint8(_photo_crop(photo_rng, photos, canvas_h, canvas_w))
    origin = margin + extra - cam_v * (frames - 1) / 2

    # Objects: target first, then distractors kept apart from it and from each other.
    side = rng.uniform(TARGET_MIN_SIDE + 4, TARGET_MAX_SIDE - 8)
    target_spec = object_spec(seed, object_id, cfg.photo_objects)
    target = _make_track(rng, target_spec, frames, side, cam_v)
    others = [o for o in split_ids if o != object_id]
    k = min(cfg.distractors, len(others))
    chosen = rng.choice(others, k, replace=False) if k else []
    # A look-alike replaces the first distractor: the same outline or the same surface as the target.
    twin = photo_rng.random() < cfg.lookalikes
    same_outline = photo_rng.random() < 0.5
    tracks = [target]
    for n, o in enumerate(chosen):
        d_side = float(np.clip(side * rng.uniform(0.75, 1.3), TARGET_MIN_SIDE, TARGET_MAX_SIDE))
        spec = object_spec(seed, int(o), cfg.photo_objects)
        if n == 0 and twin:
            spec = lookalike(target_spec, spec, same_outline)
        for _ in range(30):
            tr = _make_track(rng, spec, frames, d_side, cam_v)
            gaps = [
                np.linalg.norm(tr.centres - t.centres, axis=1) - 0.6 * (tr.sides + t.sides)
                for t in tracks
            ]
            if min(g.min() for g in gaps) > 4:
                break
        tracks.append(tr)

    absent = absent_frames(seed, cfg, object_id, sequence)
    n_regular = len(tracks)
    tracks += _crossing_tracks(seed, cfg, object_id, sequence, target, split_ids, absent, camera)
    long_occ = _long_occlusions(seed, cfg, object_id, sequence, frames)
    occ_run: set[int] = set()
    occ = _occluder(rng)
    if rng.random() < 0.4:
        start, length = int(rng.integers(0, frames)), int(rng.integers(1, 5))
        occ_run = set(range(start, min(start + length, frames)))
    blur = [
        (rng.uniform(3, 8), rng.uniform(0, math.pi))  # motion blur: length, direction
        if rng.random() < 0.25
        else (rng.uniform(0.3, 0.9), None)  # defocus: gaussian sigma
        for _ in range(frames)
    ]
    # One noise tile per sequence, cropped at a random offset per frame: far cheaper than fresh
    # noise for every frame and not distinguishable from it.
    noise = noise_rng.standard_normal((FRAME_H + 32, FRAME_W + 32, 3), dtype=np.float32)
    noise *= noise_sigma
    noise_off = noise_rng.integers(0, 33, (frames, 2))

    for i in range(frames):
        ox, oy = origin + cam_v * i
        pan = np.float64([[1, 0, -ox], [0, 1, -oy]])
        lin = None if camera is None else camera[i]
        if lin is not None:  # the camera's map about the frame centre, after the pan
            pan = np.hstack([lin, (centre - lin @ (centre + (ox, oy)))[:, None]])
        img = cv2.warpAffine(bg, pan, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
        img = img.astype(np.float32)
        present = i not in absent
        patches: dict[int, tuple[int, int, np.ndarray, np.ndarray]] = {}  # track index -> patch
        for j, t in enumerate(tracks):
            if j == 0 and not present:
                continue
            aff = _affine(t, i, squash[i], tilt)
            if lin is not None:
                aff = np.hstack([lin @ aff[:, :2], (centre + lin @ (aff[:, 2] - centre))[:, None]])
            # Twice the long side covers outline, shadow and blur at any zoom (at most 1 + zoom).
            if j >= n_regular and _off_frame(aff[:, 2], 2 * t.sides[i] * (1 + cfg.zoom)):
                continue  # a crossing look-alike spends most of a long clip out of view
            # Lit from the side opposite its shadow.
            light_ang = sun_ang + math.pi - math.atan2(aff[1, 0], aff[0, 0])
            patches[j] = render_object(t.spec, aff, (light_ang, t.light), SUPERSAMPLE, photos)
        box, mask = None, None
        if 0 in patches:
            x0, y0, _, alpha = patches[0]
            mask = np.zeros((FRAME_H, FRAME_W), bool)
            _paste_mask(mask, x0, y0, alpha >= 0.5)
            box = _mask_box(mask, x0, y0, alpha.shape)
        # Distractors before the target, so that none of them ever hides it.
        visible = [j for j in range(1, len(tracks)) if j in patches]
        visible += [0] if 0 in patches and draw_target else []
        zoom = 1.0 if lin is None else math.sqrt(abs(np.linalg.det(lin)))
        for j in visible:  # all shadows first: they lie on the ground, under every object
            x0, y0, _, alpha = patches[j]
            dx, dy = np.round(sun * 0.08 * tracks[j].sides[i] * zoom).astype(int)
            _shade(img, x0 + dx, y0 + dy, cv2.GaussianBlur(alpha, (0, 0), 1.5), 0.4)
        for j in visible:
            _paste(img, *patches[j])
        if box is None:
            mask = None
        elif i in long_occ:
            _draw_occluder(img, long_occ[i], mask, box)
        elif i in occ_run:
            _draw_occluder(img, occ, mask, box)

        # Gain, contrast and colour cast as one per-channel affine map (a single pass).
        a = gain[i] * contrast * cast
        b = 128.0 * (1 - contrast) * gain[i] * cast
        img = cv2.transform(img, np.hstack([np.diag(a), b[:, None]]))
        length, ang = blur[i]
        if ang is None:
            img = cv2.GaussianBlur(img, (0, 0), length)
        else:
            n = int(round(length)) | 1
            kernel = np.zeros((n, n), np.float32)
            d = (n - 1) / 2 * np.array([math.cos(ang), math.sin(ang)])
            c = (n - 1) / 2
            p, q = np.round([c - d, c + d]).astype(int)
            cv2.line(kernel, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1.0, 1)
            img = cv2.filter2D(img, -1, kernel / kernel.sum())
        nx, ny = noise_off[i]
        img += noise[ny : ny + FRAME_H, nx : nx + FRAME_W]
        yield DemoFrame(index=i, image=_to_uint8(img), box=box, mask=mask)


def _off_frame(centre: np.ndarray, reach: float) -> bool:
    """Whether nothing within ``reach`` px of ``centre`` is inside the frame."""
    x, y = centre
    return bool(x < -reach or x > FRAME_W + reach or y < -reach or y > FRAME_H + reach)


def _mask_box(
    mask: np.ndarray, x0: int, y0: int, shape: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """Tight box (pixel edges) of ``mask`` inside the patch window at (x0, y0); None if empty."""
    xa, ya = max(x0, 0), max(y0, 0)
    window = mask[ya : y0 + shape[0], xa : x0 + shape[1]]
    cols, rows = np.flatnonzero(window.any(0)), np.flatnonzero(window.any(1))
    if not len(cols):
        return None
    return xa + int(cols[0]), ya + int(rows[0]), xa + int(cols[-1]) + 1, ya + int(rows[-1]) + 1


def _paste_mask(dst: np.ndarray, x0: int, y0: int, m: np.ndarray) -> None:
    h, w = m.shape
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + w, dst.shape[1]), min(y0 + h, dst.shape[0])
    if xa < xb and ya < yb:
        dst[ya:yb, xa:xb] |= m[ya - y0 : yb - y0, xa - x0 : xb - x0]


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def frame_name(object_id: int, sequence: int, index: int) -> str:
    """File stem of frame ``index`` of ``sequence`` (see the numbering convention above)."""
    return f"Class_{object_id}_frame_{sequence * 1000 + index:06d}"


def template_name(object_id: int, k: int) -> str:
    """File name of reference photo ``k`` (1-based)."""
    return f"Class_{object_id}_ref_{k}.jpg"


def yolo_line(box: tuple[int, int, int, int] | None) -> str:
    """The label file's text for a pixel box (empty when the target is absent)."""
    if box is None:
        return ""
    x1, y1, x2, y2 = box
    return (
        f"0 {(x1 + x2) / 2 / FRAME_W:.6f} {(y1 + y2) / 2 / FRAME_H:.6f} "
        f"{(x2 - x1) / FRAME_W:.6f} {(y2 - y1) / FRAME_H:.6f}\n"
    )


def _imwrite(path: Path, img: np.ndarray, quality: int) -> None:
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"{path}: could not write image")


def _split_of(cfg: DemoConfig, object_id: int) -> str:
    return "val" if object_id < cfg.val_objects else "train"


def frames_per_sequence(cfg: DemoConfig, object_id: int) -> int:
    """Frames in each sequence of ``object_id``: ``val_frames_per_sequence`` for a val identity
    when it is set (> 0), else ``frames_per_sequence``."""
    if _split_of(cfg, object_id) == "val" and cfg.val_frames_per_sequence > 0:
        return cfg.val_frames_per_sequence
    return cfg.frames_per_sequence


def uses_photos(cfg: DemoConfig) -> bool:
    """Whether ``cfg`` draws anything from the training photos."""
    return cfg.photo_objects > 0 or cfg.photo_grounds > 0


@functools.lru_cache(maxsize=2)
def _photos(photo_dir: Path | None) -> tuple[np.ndarray, ...]:
    """The training photos of ``photo_dir``, read once per process (None: none)."""
    return () if photo_dir is None else load_training_photos(photo_dir)


def _run_task(task: tuple[str, Path, DemoConfig, int, int, int, Path | None]) -> None:
    kind, out_dir, cfg, seed, object_id, sequence, photo_dir = task
    split = out_dir / _split_of(cfg, object_id)
    photos = _photos(photo_dir)
    if kind == "templates":
        for k, img in enumerate(render_templates(seed, cfg, object_id, photos), 1):
            _imwrite(split / "templates" / template_name(object_id, k), img, cfg.jpeg_quality)
        return
    for frame in render_sequence(seed, cfg, object_id, sequence, photos=photos):
        stem = frame_name(object_id, sequence, frame.index)
        _imwrite(split / "search" / "images" / f"{stem}.jpg", frame.image, cfg.jpeg_quality)
        (split / "search" / "labels" / f"{stem}.txt").write_text(yolo_line(frame.box))


VIDEO_FPS = 25.0
VIDEO_FOURCC = "mp4v"


def video_id(object_id: int) -> str:
    """Video id (sample folder name) of ``object_id`` in the video layout."""
    return f"video_{object_id:02d}"


def _run_video_task(task: tuple[Path, DemoConfig, int, int, Path | None]) -> dict:
    """Write one object's sample folder (photos + clip); returns its ``annotations.json`` entry."""
    out_dir, cfg, seed, object_id, photo_dir = task
    photos = _photos(photo_dir)
    vid = video_id(object_id)
    sample = out_dir / _split_of(cfg, object_id) / "samples" / vid
    (sample / "object_images").mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(render_templates(seed, cfg, object_id, photos), 1):
        _imwrite(sample / "object_images" / f"img_{k}.jpg", img, cfg.jpeg_quality)
    path = sample / "drone_video.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), VIDEO_FPS, (FRAME_W, FRAME_H))
    if not writer.isOpened():
        raise OSError(f"{path}: could not open an {VIDEO_FOURCC} video writer")
    bboxes = []
    try:
        for s in range(cfg.sequences_per_object):
            for frame in render_sequence(seed, cfg, object_id, s, photos=photos):
                writer.write(frame.image)
                if frame.box is not None:
                    n = s * frames_per_sequence(cfg, object_id) + frame.index
                    bboxes.append({"frame": n, **dict(zip(("x1", "y1", "x2", "y2"), map(int, frame.box)))})
    finally:
        writer.release()
    return {"video_id": vid, "annotations": [{"bboxes": bboxes}] if bboxes else []}


def _generate_video_layout(out_dir: Path, cfg: DemoConfig, seed: int, workers: int, photo_dir: Path | None) -> None:
    tasks = [(out_dir, cfg, seed, o, photo_dir) for o in range(cfg.val_objects + cfg.train_objects)]
    workers = max(1, min(workers, len(tasks)))
    if workers == 1:
        entries = [_run_video_task(task) for task in tasks]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            entries = list(pool.map(_run_video_task, tasks))
    for split in ("train", "val"):
        mine = [e for e, (_, _, _, o, _) in zip(entries, tasks) if _split_of(cfg, o) == split]
        (out_dir / split / "annotations").mkdir(parents=True, exist_ok=True)
        (out_dir / split / "annotations" / "annotations.json").write_text(json.dumps(mine, indent=1) + "\n")


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; nested threads only contend


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def generate_demo(
    out_dir: Path, cfg: DemoConfig, seed: int, *, workers: int | None = None, photo_dir: Path | None = None
) -> None:
    """Write the demo data set to out_dir in the CPN on-disk layout (``cfg.layout: video``: in the
    drone-video layout, see the module docstring).

    ``workers``: processes to use (default: the CPUs this process may run on); the output does not
    depend on it. Workers are spawned, so a script that calls this at top level needs the usual
    ``if __name__ == "__main__":`` guard. ``photo_dir``: the folder of OpenCV's sample photos, read
    when ``cfg`` uses training photos (:func:`uses_photos`); a missing photo is a FileNotFoundError
    naming it, raised before anything is written.
    """
    if not uses_photos(cfg):
        photo_dir = None
    elif photo_dir is None:
        raise ConfigError("data.demo.photo_objects / photo_grounds > 0 need the folder of the training photos")
    else:
        photo_dir = Path(photo_dir)
        _photos(photo_dir)  # every file read here, in this process, before any worker starts
    if cfg.layout == "video":
        _generate_video_layout(Path(out_dir), cfg, seed, workers or _default_workers(), photo_dir)
        return
    for key in ("frames_per_sequence", "val_frames_per_sequence"):
        if getattr(cfg, key) > MAX_FRAMES_PER_SEQUENCE:
            raise ConfigError(
                f"data.demo.{key}: {getattr(cfg, key)} is too large, must be <= "
                f"{MAX_FRAMES_PER_SEQUENCE} (frame numbers s*1000+i need a gap between sequences)"
            )
    out_dir = Path(out_dir)
    for split in ("train", "val"):
        for sub in ("templates", "search/images", "search/labels"):
            (out_dir / split / sub).mkdir(parents=True, exist_ok=True)
    n_objects = cfg.val_objects + cfg.train_objects
    tasks: list[tuple[str, Path, DemoConfig, int, int, int, Path | None]] = []
    for o in range(n_objects):
        tasks.append(("templates", out_dir, cfg, seed, o, 0, photo_dir))
        for s in range(cfg.sequences_per_object):
            tasks.append(("sequence", out_dir, cfg, seed, o, s, photo_dir))
    workers = max(1, min(workers or _default_workers(), len(tasks)))
    if workers == 1:
        for task in tasks:
            _run_task(task)
        return
    # spawn, not fork: the caller may hold torch / OpenCV thread pools that do not survive fork.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
        for _ in pool.map(_run_task, tasks):
            pass
