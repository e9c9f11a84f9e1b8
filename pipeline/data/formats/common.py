"""What every format reader returns, and the file-level checks the readers share.

Readers look at names and label text only (coco also decodes the images it crops references
from); decoding every image, checking boxes against image sizes and deciding whether a problem
stops the run is :mod:`pipeline.data.ingest`'s job.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from pipeline.cli import UserError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLIT_NAMES = ("train", "val")
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Problem:
    """One bad input: the file, the 1-based line for label lines, and what is wrong."""

    file: Path
    line: int | None
    reason: str


@dataclass(frozen=True)
class Frame:
    """One search frame as a reader sees it, before its image is decoded.

    ``box`` is ``x1, y1, x2, y2``; in pixels, or in 0..1 of the image size when ``normalized``
    (YOLO labels), converted once the size is known. ``None`` means the target is absent.
    ``split`` is the data's own split, ``None`` when the data has none. ``label`` and
    ``label_line`` say where the box came from, for messages.
    """

    split: str | None
    object_id: str
    sequence_id: str
    frame_index: int
    image: Path
    box: Box | None
    normalized: bool = False
    label: Path | None = None
    label_line: int | None = None
    label_note: str | None = None  # where in ``label`` when lines do not say it (COCO ids)


@dataclass
class ReadResult:
    """Frames, reference photos per object, and every problem found while reading."""

    frames: list[Frame] = field(default_factory=list)
    templates: dict[str, list[Path]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def list_files(folder: Path, problems: list[Problem], *, suffixes: tuple[str, ...]) -> list[Path]:
    """Sorted visible files of ``folder`` with one of ``suffixes``; anything else is a problem.

    Hidden files (``.DS_Store``, editor swap files) are skipped: they are never data.
    """
    out = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            problems.append(Problem(path, None, "unexpected folder"))
        elif path.suffix.lower() not in suffixes:
            expected = ", ".join(suffixes)
            problems.append(Problem(path, None, f"unexpected file (expected {expected})"))
        else:
            out.append(path)
    return out


def unique_stems(paths: Iterable[Path], problems: list[Problem]) -> dict[str, Path]:
    """Map stem -> file; files sharing a stem (``a.jpg`` and ``a.png``) are all problems,
    because which one the label or id refers to is ambiguous."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        by_stem[path.stem].append(path)
    out = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            out[stem] = group[0]
            continue
        names = " and ".join(p.name for p in group)
        problems.extend(Problem(p, None, f"duplicate name: {names} share a stem") for p in group)
    return out


def require_dir(path: Path, what: str) -> Path:
    """A folder the layout cannot do without; its absence is a layout error, never skipped."""
    if not path.is_dir():
        raise UserError(f"{path}: missing folder ({what})")
    return path


def split_dirs(root: Path) -> list[tuple[str | None, Path]]:
    """``[("train", root/train), ("val", root/val)]`` when the data brings its own split (either
    folder present), else ``[(None, root)]``."""
    present = [(name, root / name) for name in SPLIT_NAMES if (root / name).is_dir()]
    return present or [(None, root)]


def sequence_numbers(frame_numbers: Iterable[int]) -> dict[int, int]:
    """Frame number -> sequence number: consecutive numbers form one sequence, a gap starts the
    next (``0 1 2 1000 1001`` -> sequences 0, 0, 0, 1, 1)."""
    out: dict[int, int] = {}
    seq, prev = -1, None
    for n in sorted(set(frame_numbers)):
        if prev is None or n != prev + 1:
            seq += 1
        out[n] = seq
        prev = n
    return out


def read_box(label: Path, n_fields: int) -> tuple[list[float] | None, int | None, Problem | None]:
    """Parse a label file holding at most one box line of ``n_fields`` numbers.

    Returns ``(values, line, None)``, ``(None, None, None)`` for an empty file (target absent),
    or ``(None, line, problem)``.
    """
    try:
        text = label.read_text()
    except UnicodeDecodeError:
        return None, None, Problem(label, None, "not a text file")
    except OSError as exc:
        return None, None, Problem(label, None, f"cannot read label file ({exc.strerror})")
    lines = [(i, s.split()) for i, s in enumerate(text.splitlines(), 1) if s.strip()]
    if not lines:
        return None, None, None
    if len(lines) > 1:
        line = lines[1][0]
        return None, line, Problem(label, line, "more than one box; a frame has one target at most")
    line, fields = lines[0]
    if len(fields) != n_fields:
        return None, line, Problem(label, line, f"expected {n_fields} numbers, got {len(fields)}")
    try:
        values = [float(f) for f in fields]
    except ValueError:
        return None, line, Problem(label, line, f"not a number in {' '.join(fields)!r}")
    if not all(math.isfinite(v) for v in values):
        return None, line, Problem(label, line, f"not a finite number in {' '.join(fields)!r}")
    return values, line, None


def parse_numbered(stem: str, pattern: re.Pattern[str]) -> tuple[str, int] | None:
    """``(object_id, number)`` from a file stem matching ``pattern`` (groups ``obj`` and ``n``)."""
    m = pattern.fullmatch(stem)
    return (m["obj"], int(m["n"])) if m else None


@dataclass(frozen=True)
class NamedFrame:
    """A frame image whose name gave its object id and frame number, with its label file."""

    object_id: str
    number: int
    image: Path
    label: Path


@dataclass
class SearchFolder:
    """Frames of one ``search/`` folder (``images/`` + ``labels/``), named ``<obj>_frame_<n>``."""

    split: str | None
    frames: list[NamedFrame]


def read_search_folder(
    search: Path, split: str | None, pattern: re.Pattern[str], problems: list[Problem]
) -> SearchFolder:
    """List ``search/images`` and ``search/labels``; misnamed files, duplicate stems, images
    without a label file and labels without an image are problems."""
    images_dir = require_dir(search / "images", "search frames")
    labels_dir = require_dir(search / "labels", "frame labels")
    images = list_files(images_dir, problems, suffixes=IMAGE_EXTS)
    labels = list_files(labels_dir, problems, suffixes=(".txt",))
    named = []
    for path in images:
        if parse_numbered(path.stem, pattern) is None:
            reason = f"unexpected frame name (expected {pattern.pattern})"
            problems.append(Problem(path, None, reason))
        else:
            named.append(path)
    frames = unique_stems(named, problems)
    label_by_stem = unique_stems(labels, problems)
    for stem, image in frames.items():
        if stem not in label_by_stem:
            problems.append(Problem(image, None, f"no label file (expected labels/{stem}.txt)"))
    all_image_stems = {p.stem for p in images}
    for stem, label in label_by_stem.items():
        if stem not in all_image_stems:
            problems.append(Problem(label, None, "label file without an image"))
    named_frames = [
        NamedFrame(*parse_numbered(stem, pattern), image, label_by_stem[stem])  # type: ignore[misc]
        for stem, image in sorted(frames.items())
        if stem in label_by_stem
    ]
    return SearchFolder(split, named_frames)


def build_frames(
    folders: list[SearchFolder],
    parse_label: Callable[[Path], tuple[Box | None, int | None, Problem | None]],
    problems: list[Problem],
    *,
    normalized: bool,
) -> list[Frame]:
    """Frames of all ``folders`` with sequence ids; an object found in two splits keeps only its
    first split (``train``), the other's files are problems, so no object leaks across splits."""
    first_split: dict[str, str | None] = {}
    numbered: dict[str, dict[int, tuple[str | None, NamedFrame]]] = defaultdict(dict)
    for folder in folders:
        for named in folder.frames:
            obj, n = named.object_id, named.number
            split = first_split.setdefault(obj, folder.split)
            if split != folder.split:
                reason = f"object {obj} is also in split {split}"
                problems.append(Problem(named.image, None, reason))
            elif n in numbered[obj]:
                other = numbered[obj][n][1].image.name
                reason = f"frame {n} of object {obj} is also {other}"
                problems.append(Problem(named.image, None, reason))
            else:
                numbered[obj][n] = (folder.split, named)
    frames = []
    for obj in sorted(numbered):
        # Sequences come from all well-named frames, so rejecting one never splits a sequence.
        seq_of = sequence_numbers(numbered[obj])
        for n, (split, named) in sorted(numbered[obj].items()):
            box, line, problem = parse_label(named.label)
            if problem is not None:
                problems.append(problem)
                continue
            frames.append(
                Frame(
                    split=split,
                    object_id=obj,
                    sequence_id=f"{obj}_s{seq_of[n]}",
                    frame_index=n,
                    image=named.image,
                    box=box,
                    normalized=normalized,
                    label=named.label,
                    label_line=line,
                )
            )
    return frames
