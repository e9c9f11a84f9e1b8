"""The ``refdet`` layout (seed 000)::

    <root>/templates/<object_id>/*.jpg                          # reference photos, any names
    <root>/{train,val}/search/images/<object_id>_frame_<n>.jpg
    <root>/{train,val}/search/labels/<object_id>_frame_<n>.txt  # "x1 y1 x2 y2" in pixels, or empty

Without ``train/`` and ``val/``, ``search/`` may sit directly under ``<root>``; the data then has
no split of its own. Sequences are formed from frame numbers as in :mod:`.cpn`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.data.formats.common import (
    IMAGE_EXTS,
    Box,
    Problem,
    ReadResult,
    build_frames,
    list_files,
    read_box,
    read_search_folder,
    require_dir,
    split_dirs,
    unique_stems,
)

FRAME_PATTERN = re.compile(r"(?P<obj>.+)_frame_(?P<n>\d+)")


def parse_xyxy(label: Path) -> tuple[Box | None, int | None, Problem | None]:
    """``x1 y1 x2 y2`` in pixels."""
    values, line, problem = read_box(label, 4)
    if values is None:
        return None, line, problem
    x1, y1, x2, y2 = values
    return (x1, y1, x2, y2), line, None


def read_templates(folder: Path, problems: list[Problem]) -> dict[str, list[Path]]:
    """One sub-folder of reference photos per object id, files in name order."""
    out: dict[str, list[Path]] = {}
    for obj_dir in sorted(require_dir(folder, "reference photos, one folder per object").iterdir()):
        if obj_dir.name.startswith("."):
            continue
        if not obj_dir.is_dir():
            reason = "unexpected file (expected templates/<object_id>/)"
            problems.append(Problem(obj_dir, None, reason))
            continue
        files = list_files(obj_dir, problems, suffixes=IMAGE_EXTS)
        refs = sorted(unique_stems(files, problems).values())
        if refs:
            out[obj_dir.name] = refs
        elif not files:
            problems.append(Problem(obj_dir, None, f"object {obj_dir.name} has no templates"))
    return out


def read_refdet(root: Path) -> ReadResult:
    """Read a refdet data set; see the module docstring for the layout."""
    problems: list[Problem] = []
    templates = read_templates(root / "templates", problems)
    folders = [
        read_search_folder(base / "search", split, FRAME_PATTERN, problems)
        for split, base in split_dirs(root)
    ]
    frames = build_frames(folders, parse_xyxy, problems, normalized=False)
    return ReadResult(frames=frames, templates=templates, problems=problems)
