"""From a data folder in any format to the canonical manifest: validation, split, statistics.

Every bad input ends either the run (``on_error="raise"``: a :class:`UserError` naming the file,
the line for label lines, and the fault) or in the rejected list (``on_error="skip"``), never
silently. Every image is decoded (headers alone miss truncated files), in a small thread pool.
"""

from __future__ import annotations

import logging
import math
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np
import pandas as pd

from pipeline.cli import UserError
from pipeline.data.formats import detect_format, read_source
from pipeline.data.formats.common import Box, Frame, Problem
from pipeline.data.decode import probe
from pipeline.data.manifest import BOX, COLUMNS, SPLITS, TEMPLATE_SEP, has_target, template_list

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
REJECTED_COLUMNS = ["file", "line", "reason"]
# Upper edges (exclusive) of the box long-side histogram in data/stats.json, in pixels.
LONG_SIDE_BINS = ((16, "lt16"), (32, "16_32"), (64, "32_64"), (128, "64_128"), (math.inf, "ge128"))
# Labels may overshoot the image by rounding (normalised YOLO floats); more is a wrong box.
BOX_TOLERANCE_PX = 0.5


class NoUsableFrames(UserError):
    """Every frame was rejected (or there were none); ``rejected`` lists why, as ``Ingested.rejected`` does."""

    def __init__(self, message: str, rejected: pd.DataFrame | None = None) -> None:
        super().__init__(message)
        self.rejected = rejected if rejected is not None else pd.DataFrame(columns=REJECTED_COLUMNS)


@dataclass
class Ingested:
    """What ``prepare`` writes: the manifest, the rejected list and the statistics."""

    format: str
    manifest: pd.DataFrame
    rejected: pd.DataFrame
    stats: dict[str, Any]


class Problems:
    """Collects bad inputs; in ``raise`` mode the first one ends the run instead."""

    def __init__(self, on_error: OnError, path_str: Callable[[Path], str]) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be raise or skip, got {on_error!r}")
        self.on_error = on_error
        self.path_str = path_str
        self.items: dict[tuple[Path, int | None, str], Problem] = {}  # ordered and de-duplicated

    def add(self, problem: Problem) -> None:
        if self.on_error == "raise":
            where = self.path_str(problem.file) + (f":{problem.line}" if problem.line else "")
            raise UserError(
                f"{where}: {problem.reason} "
                "(data.on_error: skip drops bad files and lists them in rejected.csv)"
            )
        self.items.setdefault((problem.file, problem.line, problem.reason), problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            self.add(problem)

    def first(self) -> str:
        """The first problem as ``file[:line]: reason``, for messages."""
        problem = next(iter(self.items.values()))
        return self.path_str(problem.file) + (f":{problem.line}" if problem.line else "") + f": {problem.reason}"

    def frame(self) -> pd.DataFrame:
        rows = [(self.path_str(p.file), p.line, p.reason) for p in self.items.values()]
        frame = pd.DataFrame(rows, columns=REJECTED_COLUMNS)
        frame["line"] = frame["line"].astype("Int64")  # blank, not NaN/float, when there is none
        return frame


def path_formatter(root: Path, moves: Mapping[Path, Path] | None = None) -> Callable[[Path], str]:
    """``path -> str`` for the manifest: relative to ``root`` when inside it, else absolute.

    ``moves`` maps folders that are renamed after writing (a staging folder to its final name)
    so the manifest names where files will be. Symlinks are not resolved: a data folder linked
    into the repository stays a repository path.
    """
    root_abs = Path(os.path.abspath(root))
    moved = [(Path(os.path.abspath(a)), Path(os.path.abspath(b))) for a, b in (moves or {}).items()]

    def fmt(path: Path) -> str:
        p = Path(os.path.abspath(path))
        for src, dst in moved:
            if p.is_relative_to(src):
                p = dst / p.relative_to(src)
                break
        return p.relative_to(root_abs).as_posix() if p.is_relative_to(root_abs) else str(p)

    return fmt


def split_objects(object_ids: Iterable[str], val_fraction: float, seed: int) -> dict[str, str]:
    """Object id -> ``train``/``val``, by identity: a seeded shuffle, ``val_fraction`` of the
    objects (rounded) to val, at least one in each split when there are two or more."""
    ids = sorted(set(object_ids))
    order = ids.copy()
    random.Random(seed).shuffle(order)
    n_val = round(len(ids) * val_fraction)
    n_val = min(max(n_val, 1), len(ids) - 1) if len(ids) >= 2 else 0
    val = set(order[:n_val])
    return {obj: "val" if obj in val else "train" for obj in ids}


def probe_images(
    paths: list[Path], problems: Problems, workers: int = 2
) -> dict[Path, tuple[int, int]]:
    """Decode ``paths`` in ``workers`` threads; ``{path: (width, height)}`` of the good ones.

    Threads suffice: Pillow releases the GIL while its codecs decode. Results come in order, so
    in raise mode the first bad file (in ``paths`` order) stops the run and the queued decodes
    are cancelled.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        try:
            return _collect(paths, pool.map(probe, paths), problems)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _collect(
    paths: list[Path], results: Iterable[tuple[int, int] | str], problems: Problems
) -> dict[Path, tuple[int, int]]:
    sizes: dict[Path, tuple[int, int]] = {}
    for path, result in zip(paths, results):
        if isinstance(result, str):
            problems.add(Problem(path, None, result))
        else:
            sizes[path] = result
    return sizes


def pixel_box(frame: Frame, size: tuple[int, int]) -> tuple[Box | None, str | None]:
    """The frame's box in pixels, clipped to the image; or ``(None, reason)`` when it is empty
    or (beyond rounding) outside the image."""
    if frame.box is None:
        return None, None
    w, h = size
    x1, y1, x2, y2 = frame.box
    if frame.normalized:
        # Millipixels are enough for any label and keep the CSV readable (no 192.999936).
        x1, y1, x2, y2 = (round(v, 3) for v in (x1 * w, y1 * h, x2 * w, y2 * h))
    shown = f"box [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]"
    if x2 <= x1 or y2 <= y1:
        return None, f"empty {shown} (zero or negative width/height)"
    tol = BOX_TOLERANCE_PX
    if x1 < -tol or y1 < -tol or x2 > w + tol or y2 > h + tol:
        return None, f"{shown} is outside the {w}x{h} image"
    x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
    if x2 <= x1 or y2 <= y1:
        return None, f"{shown} is outside the {w}x{h} image"
    return (x1, y1, x2, y2), None


def _box_problem(frame: Frame, reason: str) -> Problem:
    if frame.label is None:
        return Problem(frame.image, None, reason)
    note = f"{frame.label_note}: " if frame.label_note else ""
    return Problem(frame.label, frame.label_line, f"{note}{reason} ({frame.image.name})")


def validate_manifest(manifest: pd.DataFrame) -> None:
    """Invariants every consumer relies on; a violation is a bug here, not bad input."""
    if list(manifest.columns) != COLUMNS:
        raise AssertionError(f"manifest columns {list(manifest.columns)} != {COLUMNS}")
    if not manifest["split"].isin(SPLITS).all():
        raise AssertionError(f"manifest splits {sorted(set(manifest['split']))} not in {SPLITS}")
    for key in ("object_id", "sequence_id"):
        per_key = manifest.groupby(key)["split"].nunique()
        leaked = sorted(per_key[per_key > 1].index)
        if leaked:
            raise AssertionError(f"{key} in both splits: {leaked[:5]}")
    boxes = manifest[BOX]
    if not (boxes.notna().all(axis=1) | boxes.isna().all(axis=1)).all():
        raise AssertionError("a box has some coordinates but not all")
    target = has_target(manifest)
    if not ((boxes.x2 > boxes.x1) & (boxes.y2 > boxes.y1))[target].all():
        raise AssertionError("an empty box got into the manifest")


def split_stats(manifest: pd.DataFrame) -> dict[str, float]:
    """Counts of one split for ``data/stats.json`` (flat numbers, for ``dvc metrics``)."""
    per_object = [len(template_list(t)) for t in manifest.groupby("object_id")["templates"].first()]
    target = manifest[has_target(manifest)]
    long_side = np.maximum(target.x2 - target.x1, target.y2 - target.y1)
    mean = round(sum(per_object) / len(per_object), 3) if per_object else 0.0
    stats: dict[str, float] = {
        "objects": int(manifest["object_id"].nunique()),
        "sequences": int(manifest["sequence_id"].nunique()),
        "frames": len(manifest),
        "frames_without_target": len(manifest) - len(target),
        "templates": sum(per_object),
        "templates_per_object_min": min(per_object, default=0),
        "templates_per_object_mean": mean,
        "templates_per_object_max": max(per_object, default=0),
    }
    lower = 0.0
    for upper, name in LONG_SIDE_BINS:
        stats[f"box_long_side_{name}"] = int(((long_side >= lower) & (long_side < upper)).sum())
        lower = upper
    return stats


def build_stats(manifest: pd.DataFrame, rejected: int) -> dict[str, Any]:
    """``data/stats.json``: per split counts, box sizes and templates, plus the rejected count."""
    stats: dict[str, Any] = {"rejected": rejected}
    for split in SPLITS:
        stats[split] = split_stats(manifest[manifest["split"] == split])
    return stats


def ingest(
    source: Path,
    fmt: str = "auto",
    *,
    on_error: OnError = "raise",
    val_fraction: float = 0.2,
    seed: int = 0,
    crop_dir: Path | None = None,
    frames_dir: Path | None = None,
    frame_stride: int = 1,
    workers: int = 2,
    path_str: Callable[[Path], str] = str,
    rejected_name: str = "rejected.csv",
) -> Ingested:
    """Read, validate and split the data set at ``source`` (format ``fmt`` or ``auto``).

    ``crop_dir`` receives reference crops for formats that have none of their own (coco);
    ``frames_dir`` the frames decoded from videos (video), every ``frame_stride``-th;
    ``path_str`` writes the paths in the manifest and the rejected list; ``rejected_name`` is
    where the caller writes that list, for messages. No usable frame at all raises
    :class:`NoUsableFrames`, which carries the rejected list.
    """
    source = Path(source)
    problems = Problems(on_error, path_str)
    if not source.is_dir():
        raise UserError(f"{source}: data folder does not exist")
    if fmt == "auto":
        fmt = detect_format(source)
    read = read_source(source, fmt, crop_dir, lambda ids: split_objects(ids, val_fraction, seed),
                       frames_dir=frames_dir, frame_stride=frame_stride)
    problems.extend(read.problems)

    # Templates first: frames of an object without usable templates are rejected for that.
    template_paths = sorted({p for paths in read.templates.values() for p in paths})
    frame_paths = sorted({f.image for f in read.frames} - set(template_paths))
    sizes = probe_images(template_paths + frame_paths, problems, workers)
    templates = {obj: [p for p in paths if p in sizes] for obj, paths in read.templates.items()}

    rows = []
    for frame in read.frames:
        if frame.image not in sizes:
            continue  # already a problem: the image did not decode
        if not templates.get(frame.object_id):
            usable = "usable " if frame.object_id in templates else ""
            reason = f"object {frame.object_id} has no {usable}templates"
            problems.add(Problem(frame.image, None, reason))
            continue
        box, reason = pixel_box(frame, sizes[frame.image])
        if reason is not None:
            problems.add(_box_problem(frame, reason))
            continue
        rows.append((frame, box, sizes[frame.image]))

    idle = sorted(set(templates) - {frame.object_id for frame in read.frames})
    if idle:
        log.warning("%d objects have templates but no frames: %s", len(idle), ", ".join(idle[:10]))
    if not rows:
        raise NoUsableFrames(_nothing_usable(source, problems, rejected_name), problems.frame())
    # The data's own split where it has one, else by object identity, so val objects are unseen.
    unsplit = {frame.object_id for frame, _, _ in rows if frame.split is None}
    split_of = split_objects(unsplit, val_fraction, seed) if unsplit else {}
    manifest = _manifest(rows, split_of, templates, path_str)
    validate_manifest(manifest)

    rejected = problems.frame()
    for split in SPLITS:
        if not (manifest["split"] == split).any():
            log.warning("split %s has no frames", split)
    if len(rejected):
        log.warning(
            "%d bad inputs skipped (data.on_error: skip), listed in %s", len(rejected), rejected_name
        )
    return Ingested(fmt, manifest, rejected, build_stats(manifest, len(rejected)))


def _nothing_usable(source: Path, problems: Problems, rejected_name: str) -> str:
    if not problems.items:
        return f"{source}: no usable frames"
    return (f"{source}: no usable frames, all {len(problems.items)} inputs were rejected "
            f"(first: {problems.first()}); every reason is listed in {rejected_name}")


def _manifest(
    rows: list[tuple[Frame, Box | None, tuple[int, int]]],
    split_of: Mapping[str, str],
    templates: Mapping[str, list[Path]],
    path_str: Callable[[Path], str],
) -> pd.DataFrame:
    records = [
        {
            "split": frame.split or split_of[frame.object_id],
            "object_id": frame.object_id,
            "sequence_id": frame.sequence_id,
            "frame_index": frame.frame_index,
            "image": path_str(frame.image),
            "width": size[0],
            "height": size[1],
            **dict(zip(BOX, box if box is not None else (math.nan,) * 4)),
            "templates": TEMPLATE_SEP.join(path_str(p) for p in templates[frame.object_id]),
        }
        for frame, box, size in rows
    ]
    manifest = pd.DataFrame.from_records(records, columns=COLUMNS)
    manifest[BOX] = manifest[BOX].astype(float)
    order = manifest["split"].map(SPLITS.index)
    keys = ["_order", "object_id", "sequence_id", "frame_index", "image"]
    manifest = manifest.assign(_order=order).sort_values(keys)
    return manifest.drop(columns="_order").reset_index(drop=True)
