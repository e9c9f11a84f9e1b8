"""The ``video`` layout of drone search-and-rescue benchmarks: one clip per object. Layout::

    <root>/samples/<video_id>/object_images/*.jpg     # reference photos of the object (any names)
    <root>/samples/<video_id>/drone_video.mp4         # the clip
    <root>/annotations/annotations.json               # boxes per video frame

or the same under ``<root>/train/`` and ``<root>/val/`` when the data brings its own split.
``annotations.json`` is a list with one entry per video::

    [{"video_id": "...", "annotations": [{"bboxes": [{"frame": 370, "x1": 422, "y1": 310,
                                                       "x2": 470, "y2": 355}, ...]}, ...]}, ...]

``frame`` is the 0-based frame number of the video, boxes are pixels; every ``bboxes`` list of a
video is merged (one target per frame), frames without a box are "target absent", and
``"annotations": []`` means the object is never in view.

Frames ``0, s, 2s, ...`` (``s`` = ``frame_stride``) are decoded with OpenCV and written as JPEGs to
``frames_dir/<video_id>/frame_<n>.jpg``, so the rest of the pipeline reads them as any frame.
The video is the object and the sequence: ``object_id = sequence_id = video_id`` and
``frame_index`` is the video frame number; objects are then split by identity, i.e. by video.

Problems (bad or unreadable video, missing keys, a second box for a frame, a frame past the last
one of the video, a sample folder without annotations or the reverse) name the file, the video and
the frame. A problem with one box drops that frame; one that leaves the boxes of a video unknown
drops the whole video. So does a sample without a reference photo that decodes whole, before its
video is decoded.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from pipeline.cli import UserError
from pipeline.data.formats.common import (
    IMAGE_EXTS,
    Box,
    Frame,
    Problem,
    ReadResult,
    list_files,
    require_dir,
    split_dirs,
    unique_stems,
)
from pipeline.data.decode import probe

log = logging.getLogger(__name__)

VIDEO_NAME = "drone_video.mp4"
TEMPLATE_DIR = "object_images"
ANNOTATIONS = Path("annotations") / "annotations.json"
BOX_KEYS = ("x1", "y1", "x2", "y2")
FRAME_QUALITY = 95  # JPEG quality of the decoded frames


class BadVideo(Exception):
    """The file is not a video OpenCV can decode; the message says why (without the path)."""


@dataclass
class VideoBoxes:
    """The boxes of one video as ``annotations.json`` gives them.

    ``boxes``: frame number -> ``(x1, y1, x2, y2)`` px. ``bad_frames``: frames whose box is broken
    (dropped). ``broken``: the boxes of this video cannot be trusted at all (video dropped).
    """

    boxes: dict[int, Box] = field(default_factory=dict)
    bad_frames: set[int] = field(default_factory=set)
    broken: bool = False


def frame_file(frames_dir: Path, video_id: str, n: int) -> Path:
    """Where frame ``n`` of ``video_id`` is written."""
    return frames_dir / video_id / f"frame_{n:06d}.jpg"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_annotations(path: Path, problems: list[Problem]) -> dict[str, VideoBoxes]:
    """``video_id -> VideoBoxes`` of one ``annotations.json``; every fault is a problem on ``path``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(Problem(path, None, f"not a readable JSON file ({exc})"))
        return {}
    if not isinstance(data, list):
        problems.append(Problem(path, None, f"expected a list of videos, got {type(data).__name__}"))
        return {}
    out: dict[str, VideoBoxes] = {}
    for i, entry in enumerate(data):
        vid = entry.get("video_id") if isinstance(entry, dict) else None
        if not isinstance(vid, str) or not vid:
            problems.append(Problem(path, None, f"entry {i}: missing key 'video_id' (a non-empty string)"))
            continue
        if vid in out:
            problems.append(Problem(path, None, f"video {vid}: listed twice"))
            out[vid].broken = True
            continue
        video = out[vid] = VideoBoxes()
        groups = entry.get("annotations")
        if not isinstance(groups, list):
            problems.append(Problem(path, None, f"video {vid}: missing key 'annotations' (a list)"))
            video.broken = True
            continue
        for g, group in enumerate(groups):
            bboxes = group.get("bboxes") if isinstance(group, dict) else None
            if not isinstance(bboxes, list):
                problems.append(Problem(path, None, f"video {vid}: annotation {g}: missing key 'bboxes' (a list)"))
                video.broken = True
                continue
            for j, bbox in enumerate(bboxes):
                _add_box(path, vid, f"annotation {g} bbox {j}", bbox, video, problems)
    return out


def _add_box(path: Path, vid: str, where: str, bbox: Any, video: VideoBoxes, problems: list[Problem]) -> None:
    frame = bbox.get("frame") if isinstance(bbox, dict) else None
    if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
        problems.append(Problem(path, None, f"video {vid}: {where}: missing key 'frame' (an integer >= 0)"))
        video.broken = True  # which frame it meant is unknown: none of them can be trusted
        return
    at = f"video {vid} frame {frame}"
    missing = [k for k in BOX_KEYS if not _number(bbox.get(k))]
    if missing:
        reason = f"{at}: missing or non-numeric key(s) {', '.join(repr(k) for k in missing)}"
        problems.append(Problem(path, None, reason))
        video.bad_frames.add(frame)
    elif frame in video.boxes or frame in video.bad_frames:
        problems.append(Problem(path, None, f"{at}: a second box (a frame has one target at most)"))
        video.bad_frames.add(frame)
    else:
        video.boxes[frame] = tuple(float(bbox[k]) for k in BOX_KEYS)  # type: ignore[assignment]


class VideoFrames:
    """Every ``stride``-th frame of a video file, decoded with OpenCV: iterate for ``(n, bgr)``
    (``n`` the 0-based frame number, ``bgr`` ``[H, W, 3]`` uint8). After the loop, ``count`` is
    the number of frames in the video. :class:`BadVideo` when it cannot be opened, a frame does
    not decode, or it has no frame at all."""

    def __init__(self, path: Path, stride: int = 1) -> None:
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if not Path(path).is_file():
            raise BadVideo("file not found")
        self.path, self.stride, self.count = Path(path), stride, 0
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            raise BadVideo("cannot open video (not a video file, truncated, or a codec OpenCV lacks)")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.reported = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)  # the header's word, not always true

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        cap = self._cap
        try:
            while cap.grab():  # grab alone for skipped frames: no colour conversion, no copy
                n, self.count = self.count, self.count + 1
                if n % self.stride:
                    continue
                ok, bgr = cap.retrieve()
                if not ok or bgr is None:
                    raise BadVideo(f"cannot decode frame {n}")
                yield n, bgr
        finally:
            cap.release()
        if self.count == 0:
            raise BadVideo("no frame could be decoded")
        if self.reported > self.count:
            log.warning("%s: header says %d frames but only %d decode (truncated?)", self.path, self.reported,
                        self.count)


def decode_video(path: Path, out_dir: Path, stride: int) -> int:
    """Write frames ``0, stride, 2*stride, ...`` of ``path`` as JPEGs into ``out_dir`` (named as
    :func:`frame_file` names them) and return the number of frames in the video; :class:`BadVideo`
    as :class:`VideoFrames` raises it."""
    frames = VideoFrames(path, stride)
    out_dir.mkdir(parents=True, exist_ok=True)
    for n, bgr in frames:
        target = out_dir / f"frame_{n:06d}.jpg"
        if not cv2.imwrite(str(target), bgr, [cv2.IMWRITE_JPEG_QUALITY, FRAME_QUALITY]):
            raise OSError(f"{target}: could not write frame")
    return frames.count


def sample_folders(root: Path) -> list[tuple[str | None, str, Path]]:
    """``(split, video_id, folder)`` of every ``samples/<video_id>/`` of a video data set (with or
    without split folders), in split and name order; no ``samples/`` folder is a UserError."""
    out = []
    for split, base in split_dirs(root):
        samples = require_dir(base / "samples", "one folder per video")
        out += [(split, p.name, p) for p in sorted(samples.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return out


def _sample_templates(folder: Path, vid: str, problems: list[Problem]) -> list[Path]:
    refs_dir = folder / TEMPLATE_DIR
    if not refs_dir.is_dir():
        problems.append(Problem(refs_dir, None, f"video {vid} has no {TEMPLATE_DIR}/ folder (reference photos)"))
        return []
    files = list_files(refs_dir, problems, suffixes=IMAGE_EXTS)
    refs = sorted(unique_stems(files, problems).values())
    if not files:
        problems.append(Problem(refs_dir, None, f"object of video {vid} has no templates"))
    return refs


def _usable_templates(refs: list[Path], problems: list[Problem]) -> list[Path]:
    """The reference photos that decode whole; each one that does not is a problem (with the
    reason ingest's own check gives, so the two reports are one)."""
    usable = []
    for ref in refs:
        result = probe(ref)
        if isinstance(result, str):
            problems.append(Problem(ref, None, result))
        else:
            usable.append(ref)
    return usable


def _sample_folders(samples: Path, problems: list[Problem]) -> dict[str, Path]:
    """``video_id -> folder`` of ``samples/``; loose files and unexpected entries are problems."""
    out = {}
    for folder in sorted(samples.iterdir()):
        if folder.name.startswith("."):
            continue
        if not folder.is_dir():
            problems.append(Problem(folder, None, "unexpected file (expected samples/<video_id>/)"))
            continue
        for entry in sorted(folder.iterdir()):
            if not entry.name.startswith(".") and entry.name not in (TEMPLATE_DIR, VIDEO_NAME):
                reason = f"unexpected {'folder' if entry.is_dir() else 'file'} (expected {TEMPLATE_DIR}/ and {VIDEO_NAME})"
                problems.append(Problem(entry, None, reason))
        out[folder.name] = folder
    return out


def read_video(root: Path, frames_dir: Path, frame_stride: int = 1) -> ReadResult:
    """Read a video data set (see the module docstring), decoding frames into ``frames_dir``."""
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    result = ReadResult()
    problems = result.problems
    seen: dict[str, str | None] = {}
    for split, base in split_dirs(root):
        samples = require_dir(base / "samples", "one folder per video")
        ann_path = base / ANNOTATIONS
        if not ann_path.is_file():  # a layout error: there is nothing to skip
            raise UserError(f"{ann_path}: missing file (the boxes of the videos in {samples})")
        annotations = read_annotations(ann_path, problems)
        folders = _sample_folders(samples, problems)
        for vid in sorted(set(annotations) - set(folders)):
            problems.append(Problem(ann_path, None, f"video {vid} has no folder {samples / vid}"))
        for vid, folder in folders.items():
            if vid in seen:
                problems.append(Problem(folder, None, f"video {vid} is also in split {seen[vid]}"))
                continue
            seen[vid] = split
            if vid not in annotations:
                problems.append(Problem(folder, None, f"video {vid} has no entry in {ann_path}"))
                continue
            video = annotations[vid]
            refs = _sample_templates(folder, vid, problems)
            if refs:
                result.templates[vid] = refs
            if video.broken:
                continue
            video_path = folder / VIDEO_NAME
            # Checked before decoding: every frame of an object without usable photos would be
            # rejected, after its JPEGs had been written.
            if not _usable_templates(refs, problems):
                problems.append(Problem(video_path, None, f"video {vid}: not decoded, it has no usable reference photos"))
                continue
            try:
                count = decode_video(video_path, frames_dir / vid, frame_stride)
            except BadVideo as exc:
                problems.append(Problem(video_path, None, str(exc)))
                continue
            for n in sorted(f for f in video.boxes if f >= count):
                reason = f"video {vid} frame {n}: past the last frame of {video_path} ({count} frames, 0..{count - 1})"
                problems.append(Problem(ann_path, None, reason))
            for n in range(0, count, frame_stride):
                if n in video.bad_frames:
                    continue
                box = video.boxes.get(n)
                result.frames.append(
                    Frame(
                        split=split,
                        object_id=vid,
                        sequence_id=vid,
                        frame_index=n,
                        image=frame_file(frames_dir, vid, n),
                        box=box,
                        label=ann_path if box is not None else None,
                        label_note=f"video {vid} frame {n}" if box is not None else None,
                    )
                )
    return result
