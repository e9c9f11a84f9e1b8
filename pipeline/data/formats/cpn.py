"""The ``cpn`` layout (seed 001) and the built-in demo data::

    <root>/{train,val}/templates/Class_<id>_ref_<k>.jpg
    <root>/{train,val}/search/images/Class_<id>_frame_<n>.jpg
    <root>/{train,val}/search/labels/Class_<id>_frame_<n>.txt   # "cls cx cy w h" in 0..1, or empty

Without ``train/`` and ``val/`` the same three folders may sit directly under ``<root>``; the
data then has no split of its own. Frame numbers ``n`` of one object that follow each other form
a sequence; a gap starts the next one.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from pipeline.data.formats.common import (
    IMAGE_EXTS,
    Box,
    Problem,
    ReadResult,
    build_frames,
    list_files,
    parse_numbered,
    read_box,
    read_search_folder,
    require_dir,
    split_dirs,
    unique_stems,
)

FRAME_PATTERN = re.compile(r"Class_(?P<obj>.+)_frame_(?P<n>\d+)")
TEMPLATE_PATTERN = re.compile(r"Class_(?P<obj>.+)_ref_(?P<n>\d+)")


def parse_yolo(label: Path) -> tuple[Box | None, int | None, Problem | None]:
    """``cls cx cy w h`` (normalised) -> normalised ``x1, y1, x2, y2``."""
    values, line, problem = read_box(label, 5)
    if values is None:
        return None, line, problem
    cls, cx, cy, w, h = values
    if cls != int(cls):
        return None, line, Problem(label, line, f"class {cls:g} is not an integer")
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), line, None


def read_templates(folder: Path, problems: list[Problem]) -> dict[str, list[Path]]:
    """``Class_<id>_ref_<k>`` files of one folder, per object id, ordered by ``k``."""
    named: list[Path] = []
    for path in list_files(require_dir(folder, "reference photos"), problems, suffixes=IMAGE_EXTS):
        if parse_numbered(path.stem, TEMPLATE_PATTERN) is None:
            reason = f"unexpected template name (expected {TEMPLATE_PATTERN.pattern})"
            problems.append(Problem(path, None, reason))
        else:
            named.append(path)
    by_object: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for stem, path in unique_stems(named, problems).items():
        obj, k = parse_numbered(stem, TEMPLATE_PATTERN)  # type: ignore[misc]  # filtered above
        by_object[obj].append((k, path))
    return {obj: [p for _, p in sorted(refs)] for obj, refs in sorted(by_object.items())}


def read_cpn(root: Path) -> ReadResult:
    """Read a cpn data set; see the module docstring for the layout."""
    problems: list[Problem] = []
    split_templates = []
    folders = []
    for split, base in split_dirs(root):
        split_templates.append((split, read_templates(base / "templates", problems)))
        folders.append(read_search_folder(base / "search", split, FRAME_PATTERN, problems))

    # An object lives in the first split it shows up in; its files in the other are leaks.
    home: dict[str, str | None] = {}
    for (split, templates), folder in zip(split_templates, folders):
        for obj in sorted(set(templates) | {f.object_id for f in folder.frames}):
            home.setdefault(obj, split)

    result = ReadResult(problems=problems)
    for split, templates in split_templates:
        for obj, paths in templates.items():
            if home[obj] == split:
                result.templates[obj] = paths
            else:
                reason = f"object {obj} is also in split {home[obj]}"
                problems.extend(Problem(p, None, reason) for p in paths)
    for frame in build_frames(folders, parse_yolo, problems, normalized=True):
        if home[frame.object_id] == frame.split:
            result.frames.append(frame)
        else:
            reason = f"object {frame.object_id} is also in split {home[frame.object_id]}"
            problems.append(Problem(frame.image, None, reason))
    return result
