"""A small real-photo check set, composed from openly licensed photos installed on the machine.

    python -m pipeline.realset [--out data/realset] [--objects box graffiti]   # params.yaml: realset

The DVC stage ``realset`` writes ``data/realset``, which the ``evaluate`` stage scores next to the
demo's val split (``reports/realset/``). Any checkpoint can score it too::

    python -m pipeline.evaluate --data data/realset --checkpoint models/best.pt --out scored/

Writes the ``refdet`` layout (docs/data.md) with no split of its own, so ``evaluate --data``
scores every frame::

    <out>/templates/<object>/ref_<k>.jpg                 1-3 reference photos
    <out>/search/images/<object>_frame_<n>.jpg           1024 x 576 frames, one sequence per object
    <out>/search/labels/<object>_frame_<n>.txt           "x1 y1 x2 y2" in pixels; empty = absent
    <out>/SOURCES.md                                     every file used and its licence

Each frame is a real scene (aerial photos first, see :mod:`pipeline.data.real_sources`) cropped
to 1024 x 576, with the object's photo cut out (its quadrilateral, soft-edged), rotated,
relit and scaled to a long side of 40-100 px pasted in, and other objects pasted as distractors;
every ``absent_every``-th frame leaves the target out. Where OpenCV ships a second real photo of the
object, that one is pasted and the first is a reference; the other references are augmented
views (rotation, scale, brightness). Same seed, same files, byte for byte.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.cli import UserError, run_stage, stage_parser
from pipeline.config import load_params
from pipeline.data.real_sources import BACKGROUNDS, OBJECTS, OPENCV_DATA, RealObject, View, cut_view, load_view, used_files
from pipeline.io import atomic_dir
from pipeline.paths import Paths

FRAME_W, FRAME_H = 1024, 576
LONG_SIDE = (40, 100)  # target and distractor size in the frame, px
REF_SIDE = 256  # long side of the written reference photos
JPEG_QUALITY = 92
DISABLED = "DISABLED.md"  # the only file of a switched-off set

Photo = tuple[np.ndarray, np.ndarray]  # RGB uint8 [h, w, 3], mask float32 [h, w] in [0, 1]


def _relight(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness and a slight colour cast: ``[h, w, 3]`` uint8 -> same."""
    gain = rng.uniform(0.75, 1.25) * rng.uniform(0.93, 1.07, size=3)
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def augmented(photo: Photo, long_side: int, rng: np.random.Generator, max_angle: float = 20.0) -> Photo:
    """``photo`` rotated by up to ``max_angle`` degrees, relit and scaled to ``long_side`` px."""
    rgb, mask = photo
    h, w = mask.shape
    s = 2.0 * long_side / max(h, w)  # rotate at twice the final size: fast, and no aliasing
    rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
    h, w = mask.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-max_angle, max_angle), 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    bw, bh = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    m[:, 2] += (bw - w) / 2, (bh - h) / 2
    rgb = cv2.warpAffine(rgb, m, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(mask, m, (bw, bh), flags=cv2.INTER_LINEAR, borderValue=0)
    ys, xs = np.nonzero(mask >= 0.5)  # trim to the object after rotation
    rgb, mask = rgb[ys.min():ys.max() + 1, xs.min():xs.max() + 1], mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    s = long_side / max(mask.shape)
    size = (max(1, round(mask.shape[1] * s)), max(1, round(mask.shape[0] * s)))
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    mask = cv2.GaussianBlur(cv2.resize(mask, size, interpolation=cv2.INTER_AREA), (3, 3), 0.6)
    return _relight(rgb, rng), mask


def background(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 1024 x 576 crop of ``image`` ([H, W, 3]) scaled to cover the frame, maybe mirrored."""
    h, w = image.shape[:2]
    s = max(FRAME_W / w, FRAME_H / h) * rng.uniform(1.0, 1.3)
    big = cv2.resize(image, (int(np.ceil(w * s)), int(np.ceil(h * s))), interpolation=cv2.INTER_LINEAR)
    x = int(rng.integers(0, big.shape[1] - FRAME_W + 1))
    y = int(rng.integers(0, big.shape[0] - FRAME_H + 1))
    frame = big[y:y + FRAME_H, x:x + FRAME_W]
    return np.ascontiguousarray(frame[:, ::-1] if rng.random() < 0.5 else frame)


def _free_spot(rng: np.random.Generator, w: int, h: int, taken: list[tuple[int, int, int, int]]) -> tuple[int, int] | None:
    """Top-left corner for a ``w`` x ``h`` paste clear of ``taken`` boxes by 8 px, or None."""
    for _ in range(100):
        x, y = int(rng.integers(0, FRAME_W - w)), int(rng.integers(0, FRAME_H - h))
        if all(x + w + 8 < a or b + 8 < x or y + h + 8 < c or d + 8 < y for a, c, b, d in taken):
            return x, y
    return None


def paste(frame: np.ndarray, photo: Photo, x: int, y: int) -> tuple[int, int, int, int]:
    """Alpha-blend ``photo`` into ``frame`` (in place) at ``(x, y)``; its tight box ``x1 y1 x2 y2``."""
    rgb, mask = photo
    h, w = mask.shape
    region = frame[y:y + h, x:x + w].astype(np.float32)
    a = mask[..., None]
    frame[y:y + h, x:x + w] = np.round(a * rgb + (1 - a) * region).astype(np.uint8)
    ys, xs = np.nonzero(mask >= 0.5)
    return x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1


class _Photos:
    """Loads each source photo once; cut objects by (object index, view index)."""

    def __init__(self, opencv_data: Path):
        self.opencv_data = opencv_data
        self._images: dict[View, np.ndarray] = {}

    def image(self, view: View) -> np.ndarray:
        key = View(view.source, view.name, frame=view.frame)
        if key not in self._images:
            try:
                self._images[key] = load_view(key, self.opencv_data)
            except FileNotFoundError as exc:
                raise UserError(str(exc)) from None
        return self._images[key]

    def cut(self, view: View) -> Photo:
        return cut_view(view, self.image(view))


def compose_frame(photos: _Photos, index: int, n: int, present: bool, distractors: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Frame ``n`` of object ``OBJECTS[index]``: RGB ``[576, 1024, 3]`` and the target's box (None if absent)."""
    frame = background(photos.image(BACKGROUNDS[(index + n) % len(BACKGROUNDS)]), rng)
    taken: list[tuple[int, int, int, int]] = []
    box = None
    others = [i for i in range(len(OBJECTS)) if i != index]
    pasted = [index] if present else []
    pasted += [int(i) for i in rng.choice(others, size=min(distractors, len(others)), replace=False)]
    for i in pasted:
        photo = augmented(photos.cut(OBJECTS[i].views[-1]), int(rng.integers(*LONG_SIDE, endpoint=True)), rng)
        spot = _free_spot(rng, photo[1].shape[1], photo[1].shape[0], taken)
        if spot is None:  # a distractor that does not fit is left out; the target always fits first
            continue
        taken.append(paste(frame, photo, *spot))
        if i == index:
            box = taken[-1]
    return frame, box


def reference_photos(photos: _Photos, obj: RealObject, rng: np.random.Generator, count: int = 3) -> list[np.ndarray]:
    """``count`` reference photos of ``obj`` (RGB ``[h, w, 3]``, long side 256): its other real views
    as they are, then reframed shots of its first one (crop, rotation, light)."""
    refs = []
    for view in obj.views[:-1][:count]:
        rgb, _ = photos.cut(view)  # the photo with its surroundings, as a user would take it
        s = REF_SIDE / max(rgb.shape[:2])
        refs.append(cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA))
    while len(refs) < count:
        refs.append(_reframed(photos.cut(obj.views[0])[0], rng))
    return refs


def _reframed(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Another shot of a photo ``[h, w, 3]``: 80-100 % of it, turned up to 10 degrees (borders
    mirrored, not black), relit, long side 256."""
    h, w = rgb.shape[:2]
    f = rng.uniform(0.8, 1.0)
    ch, cw = round(h * f), round(w * f)
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    s = REF_SIDE / max(ch, cw)
    crop = cv2.resize(rgb[y:y + ch, x:x + cw], (max(1, round(cw * s)), max(1, round(ch * s))), interpolation=cv2.INTER_AREA)
    m = cv2.getRotationMatrix2D((crop.shape[1] / 2, crop.shape[0] / 2), rng.uniform(-10, 10), 1.0)
    crop = cv2.warpAffine(crop, m, (crop.shape[1], crop.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return _relight(crop, rng)


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"cannot encode {path}")
    path.write_bytes(buf.tobytes())


def _sources_md() -> str:
    rows = "\n".join(f"| {src} | `{name}` | {lic} |" for src, name, lic in used_files())
    return ("# Sources of this real-photo check set\n\nComposed by `python -m pipeline.realset` from these "
            "installed files (OpenCV: `/usr/share/doc/opencv-doc/examples/data/`, Debian's opencv-doc; "
            "scikit-learn: `sklearn/datasets/images/`).\n\n| from | file | licence |\n|---|---|---|\n" + rows + "\n")


def build_realset(out: Path, opencv_data: Path = OPENCV_DATA, frames_per_object: int = 4, absent_every: int = 4,
                  distractors: int = 2, seed: int = 0, objects: Sequence[str] | None = None) -> dict[str, int]:
    """Write the check set to ``out`` (replaced whole, atomically); counts of objects and frames.

    ``objects`` restricts it to these object names (all by default); frame ``n`` of an object is
    absent when ``(n + 1) % absent_every == 0`` (0: never).
    """
    chosen = [i for i, o in enumerate(OBJECTS) if objects is None or o.name in objects]
    unknown = sorted(set(objects or ()) - {o.name for o in OBJECTS})
    if unknown:
        raise UserError(f"--objects: unknown {', '.join(unknown)} (known: {', '.join(o.name for o in OBJECTS)})")
    photos = _Photos(opencv_data)
    counts = {"objects": len(chosen), "frames": 0, "absent": 0}
    with atomic_dir(out) as tmp:
        for index in chosen:
            obj = OBJECTS[index]
            rng = np.random.default_rng([seed, index])
            for k, ref in enumerate(reference_photos(photos, obj, rng), start=1):
                _write_jpeg(tmp / "templates" / obj.name / f"ref_{k}.jpg", ref)
            for n in range(frames_per_object):
                present = absent_every == 0 or (n + 1) % absent_every != 0
                frame, box = compose_frame(photos, index, n, present, distractors, np.random.default_rng([seed, index, n]))
                stem = f"{obj.name}_frame_{n:06d}"
                _write_jpeg(tmp / "search" / "images" / f"{stem}.jpg", frame)
                label = tmp / "search" / "labels" / f"{stem}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("" if box is None else " ".join(str(v) for v in box) + "\n")
                counts["frames"] += 1
                counts["absent"] += box is None
        (tmp / "SOURCES.md").write_text(_sources_md())
    return counts


def write_disabled(out: Path) -> None:
    """``out`` as a folder that says the set is switched off (``realset.enabled: false``)."""
    with atomic_dir(out) as tmp:
        (tmp / DISABLED).write_text("realset.enabled is false in params.yaml: no real-photo check set.\n")


def is_built(folder: Path) -> bool:
    """Whether ``folder`` holds a check set (not a missing or switched-off one)."""
    return (folder / "templates").is_dir() and not (folder / DISABLED).exists()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = stage_parser(
        __doc__, "python -m pipeline.realset",
        epilog="Reads the realset section of params.yaml (source, frames_per_object, absent_every, distractors, "
               "seed, enabled); writes data/realset (the DVC stage) or --out.")
    parser.add_argument("--out", type=Path, help="output folder (default: data/realset)")
    parser.add_argument("--objects", nargs="+", help="only these objects (default: all)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    paths = Paths()
    cfg = load_params(paths.params).realset
    out = args.out or paths.realset
    if not cfg.enabled:
        write_disabled(out)
        print(f"{out}: realset.enabled is false; no check set")
        return
    source = Path(cfg.source)
    if not source.is_dir():
        raise UserError(f"realset.source: {source} is not a folder; install OpenCV's sample photos (bash "
                        "system-packages.sh installs Debian's opencv-doc) or set realset.enabled: false")
    counts = build_realset(out, source, cfg.frames_per_object, cfg.absent_every, cfg.distractors, cfg.seed,
                           args.objects)
    print(f"{out}: {counts['objects']} objects, {counts['frames']} frames ({counts['absent']} without the target)")


if __name__ == "__main__":
    run_stage(main)
