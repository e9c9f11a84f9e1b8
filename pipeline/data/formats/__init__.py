"""Readers of the supported data set layouts, and ``auto`` detection by layout.

Each reader turns one layout into a :class:`~pipeline.data.formats.common.ReadResult`; see the
modules for the layouts: :mod:`.cpn`, :mod:`.refdet`, :mod:`.coco`, :mod:`.video`.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.cli import UserError
from pipeline.data.formats.coco import SplitObjects, read_coco
from pipeline.data.formats.common import SPLIT_NAMES, ReadResult
from pipeline.data.formats.cpn import TEMPLATE_PATTERN, read_cpn
from pipeline.data.formats.refdet import read_refdet
from pipeline.data.formats.video import VIDEO_NAME, read_video

FORMATS = ("cpn", "refdet", "coco", "video")


def _first(paths: list[Path]) -> Path | None:
    return min(paths) if paths else None


def format_markers(root: Path) -> dict[str, Path]:
    """Format name -> one file or folder of ``root`` that only that layout has."""
    markers: dict[str, Path | None] = {}
    cpn_refs = [
        p
        for base in [root, *(root / s for s in SPLIT_NAMES)]
        if (base / "templates").is_dir()
        for p in (base / "templates").iterdir()
        if p.is_file() and TEMPLATE_PATTERN.fullmatch(p.stem)
    ]
    markers["cpn"] = _first(cpn_refs)
    templates = root / "templates"
    entries = list(templates.iterdir()) if templates.is_dir() else []
    markers["refdet"] = _first([p for p in entries if p.is_dir() and not p.name.startswith(".")])
    markers["coco"] = _first(sorted((root / "annotations").glob("instances_*.json")))
    markers["video"] = _first([
        p
        for base in [root, *(root / s for s in SPLIT_NAMES)]
        for p in [base / "annotations" / "annotations.json", *(base / "samples").glob(f"*/{VIDEO_NAME}")]
        if p.is_file()
    ])
    return {name: path for name, path in markers.items() if path is not None}


def detect_format(root: Path) -> str:
    """The one layout ``root`` follows; none or several found is a :class:`UserError`."""
    markers = format_markers(root)
    if len(markers) > 1:
        found = " and ".join(f"{name} ({path})" for name, path in markers.items())
        raise UserError(f"{root}: mixed data formats, found {found}; keep one layout per data set")
    if not markers:
        raise UserError(
            f"{root}: cannot detect the data format; expected templates/Class_<id>_ref_<k>.jpg "
            "(cpn), templates/<object_id>/ (refdet), annotations/instances_*.json (coco) or "
            f"samples/<video_id>/{VIDEO_NAME} (video)"
        )
    return next(iter(markers))


def read_source(
    root: Path,
    fmt: str,
    crop_dir: Path | None,
    split_objects: SplitObjects,
    *,
    frames_dir: Path | None = None,
    frame_stride: int = 1,
) -> ReadResult:
    """Read ``root`` in format ``fmt`` (``auto`` detects it). ``crop_dir`` receives the reference
    crops that formats without reference photos (coco) make; ``split_objects`` splits their
    objects by identity. ``frames_dir`` receives every ``frame_stride``-th frame of the videos
    of the video format, as JPEGs."""
    if not root.is_dir():
        raise UserError(f"{root}: data folder does not exist")
    if fmt == "auto":
        fmt = detect_format(root)
    if fmt == "cpn":
        return read_cpn(root)
    if fmt == "refdet":
        return read_refdet(root)
    if fmt == "coco":
        if crop_dir is None:
            raise ValueError("the coco format needs crop_dir for its reference crops")
        return read_coco(root, crop_dir, split_objects)
    if fmt == "video":
        if frames_dir is None:
            raise ValueError("the video format needs frames_dir for the decoded frames")
        return read_video(root, frames_dir, frame_stride)
    raise ValueError(f"unknown data format {fmt!r}, expected auto or one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "ReadResult", "detect_format", "format_markers", "read_source"]
