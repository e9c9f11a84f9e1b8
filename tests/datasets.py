"""Builders of tiny but real data sets in every supported layout, for tests of any stage.

Import them (``from tests.datasets import make_cpn_dataset``) or use the fixtures in
``tests/conftest.py``. Images are small random-noise pictures written with PIL: frames
:data:`FRAME_SIZE`, reference photos :data:`TEMPLATE_SIZE`. Every frame with a target has the
pixel box :data:`BOX` unless told otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

FRAME_SIZE = (128, 96)  # width, height
TEMPLATE_SIZE = (64, 64)
BOX = (30.0, 20.0, 70.0, 50.0)  # x1, y1, x2, y2 in pixels: long side 40 px
FRAMES = (0, 1, 2, 10, 11)  # two sequences per object: 0-2 and 10-11
TRAIN_OBJECTS = ("1", "2", "3")
VAL_OBJECTS = ("4", "5")


def write_image(path: Path, size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> Path:
    """A noise image of ``size`` (width, height); the format follows the suffix."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut ``path`` to ``keep`` of its bytes, like an interrupted copy."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def yolo_line(box: Sequence[float], size: tuple[int, int] = FRAME_SIZE, cls: int = 0) -> str:
    """``cls cx cy w h`` normalised, as cpn labels hold it."""
    (x1, y1, x2, y2), (w, h) = box, size
    return f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"


def _write_frames(base: Path, stem_of: Callable[[int], str], frames, absent, label: str, seed: int) -> None:
    """``base/search/{images,labels}``: a noise frame per number, empty labels for ``absent``."""
    for sub in ("images", "labels"):
        (base / "search" / sub).mkdir(parents=True, exist_ok=True)
    for n in frames:
        write_image(base / "search" / "images" / f"{stem_of(n)}.jpg", FRAME_SIZE, seed * 1000 + n)
        (base / "search" / "labels" / f"{stem_of(n)}.txt").write_text("" if n in absent else label)


def _objects(root: Path, train: Iterable[str], val: Iterable[str], split: bool) -> list[tuple[int, Path, str]]:
    """(seed, base folder, object id) per object; base is root/<split>, or root without split."""
    bases = [(root / "train" if split else root, o) for o in train]
    bases += [(root / "val" if split else root, o) for o in val]
    return [(seed, base, obj) for seed, (base, obj) in enumerate(bases)]


def make_cpn_dataset(
    root: Path,
    *,
    train: Sequence[str] = TRAIN_OBJECTS,
    val: Sequence[str] = VAL_OBJECTS,
    frames: Sequence[int] = FRAMES,
    absent: Sequence[int] = (2,),
    templates: int = 2,
    split: bool = True,
    box: Sequence[float] = BOX,
) -> Path:
    """A cpn data set (see :mod:`pipeline.data.formats.cpn`): every object gets ``templates``
    reference photos and frames numbered ``frames``; those in ``absent`` have empty labels.
    ``split=False`` puts everything directly under ``root`` (no train/val of its own)."""
    for seed, base, obj in _objects(root, train, val, split):
        for k in range(1, templates + 1):
            write_image(base / "templates" / f"Class_{obj}_ref_{k}.jpg", TEMPLATE_SIZE, seed * 100 + k)
        _write_frames(base, lambda n: f"Class_{obj}_frame_{n}", frames, absent, yolo_line(box), seed)
    return root


def make_refdet_dataset(
    root: Path,
    *,
    train: Sequence[str] = TRAIN_OBJECTS,
    val: Sequence[str] = VAL_OBJECTS,
    frames: Sequence[int] = FRAMES,
    absent: Sequence[int] = (2,),
    templates: int = 2,
    split: bool = True,
    box: Sequence[float] = BOX,
) -> Path:
    """A refdet data set (see :mod:`pipeline.data.formats.refdet`), like :func:`make_cpn_dataset`;
    object ids are prefixed ``obj`` (``1`` -> ``obj1``)."""
    label = " ".join(f"{v:g}" for v in box) + "\n"
    for seed, base, obj in _objects(root, train, val, split):
        for k in range(1, templates + 1):
            write_image(root / "templates" / f"obj{obj}" / f"photo_{k}.jpg", TEMPLATE_SIZE, seed * 100 + k)
        _write_frames(base, lambda n: f"obj{obj}_frame_{n}", frames, absent, label, seed)
    return root


def coco_box(image_index: int) -> list[float]:
    """COCO ``[x, y, w, h]`` of the main instance in image ``image_index`` of a category: the
    earlier the image, the larger the box, so reference ranking is predictable."""
    side = 60.0 - 4 * image_index
    return [10.0, 8.0, side, side * 0.75]


def make_coco_dataset(
    root: Path,
    *,
    categories: Sequence[int] = (1, 2, 3, 4, 5),
    images_per_category: int = 5,
    splits: Sequence[str] | None = ("train", "val"),
) -> Path:
    """A COCO data set (see :mod:`pipeline.data.formats.coco`).

    Per split (or one ``instances_all.json`` with ``splits=None``), each category has
    ``images_per_category`` images; image ``i`` holds its main instance at :func:`coco_box`,
    a smaller second instance of the same category, and a crowd region. Image ids are unique
    over all files.
    """
    next_image, next_ann = 1, 1
    for split in splits or [None]:
        name = split or "all"
        folder = root / "images" / name if split else root / "images"
        doc: dict = {
            "images": [],
            "annotations": [],
            "categories": [{"id": c, "name": f"thing{c}"} for c in categories],
        }
        for cat in categories:
            for i in range(images_per_category):
                file_name = f"img_{next_image:04d}.jpg"
                write_image(folder / file_name, FRAME_SIZE, next_image)
                doc["images"].append({"id": next_image, "file_name": file_name, "width": FRAME_SIZE[0], "height": FRAME_SIZE[1]})
                for bbox, crowd in ((coco_box(i), 0), ([90.0, 60.0, 12.0, 10.0], 0), ([0.0, 0.0, 120.0, 90.0], 1)):
                    doc["annotations"].append(
                        {"id": next_ann, "image_id": next_image, "category_id": cat, "bbox": bbox,
                         "area": bbox[2] * bbox[3], "iscrowd": crowd}
                    )
                    next_ann += 1
                next_image += 1
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{name}.json").write_text(json.dumps(doc))
    return root


def write_video(path: Path, frames: int, size: tuple[int, int] = FRAME_SIZE, seed: int = 0, fps: float = 25.0) -> Path:
    """A real mp4 (OpenCV, mp4v) of ``frames`` noise frames of ``size`` (width, height)."""
    import cv2

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def video_entry(video_id: str, boxes: dict[int, Sequence[float]], groups: int = 1) -> dict:
    """An ``annotations.json`` entry: ``boxes`` (frame -> x1, y1, x2, y2) split into ``groups``."""
    frames = sorted(boxes)
    chunks = [frames[i::groups] for i in range(groups)]
    return {"video_id": video_id, "annotations": [
        {"bboxes": [{"frame": n, **dict(zip(("x1", "y1", "x2", "y2"), boxes[n]))} for n in sorted(chunk)]}
        for chunk in chunks if chunk
    ]}


def make_video_dataset(
    root: Path,
    *,
    videos: Sequence[str] = ("clip_a", "clip_b", "clip_c"),
    frames: int = 6,
    present: Sequence[int] = (1, 2, 3, 4),
    templates: int = 3,
    box: Sequence[float] = BOX,
    split: bool = False,
) -> Path:
    """A video data set (see :mod:`pipeline.data.formats.video`): each video a real ``frames``-frame
    mp4 of noise, ``templates`` photos in ``object_images/``, the box ``box`` on the frames
    ``present``. ``split=True`` puts the first video in ``train/`` and the rest in ``val/``."""
    by_base: dict[Path, list[dict]] = {}
    for i, vid in enumerate(videos):
        base = (root / ("train" if i == 0 else "val")) if split else root
        sample = base / "samples" / vid
        write_video(sample / "drone_video.mp4", frames, seed=i)
        for k in range(1, templates + 1):
            write_image(sample / "object_images" / f"img_{k}.jpg", TEMPLATE_SIZE, seed=100 * i + k)
        by_base.setdefault(base, []).append(video_entry(vid, {n: box for n in present}))
    for base, entries in by_base.items():
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / "annotations.json").write_text(json.dumps(entries))
    return root


#: A small procedural demo (no photo textures), which the generator tests start from; the
#: committed defaults (params.yaml) are the photographic demo.
SMALL_DEMO = dict(train_objects=24, val_objects=6, sequences_per_object=2, frames_per_sequence=10,
                  val_frames_per_sequence=0, template_size=1024, photo_objects=0.0, photo_grounds=0.0, lookalikes=0.0)


def demo_config(**overrides):
    """:data:`SMALL_DEMO` with ``overrides``, as a DemoConfig."""
    from pipeline.config import DemoConfig

    return DemoConfig(**(SMALL_DEMO | overrides))
