"""COCO instances annotations, turned into one-shot episodes the way one-shot detection
benchmarks do it. Layout::

    <root>/annotations/instances_<name>.json   # one file, or one per split
    <root>/images/<name>/<file_name>           # or <root>/<name>/, or <root>/images/ (first found)

``<name>`` containing ``train`` or ``val`` gives the file's split (``instances_train2017.json``);
with a single file, any name. Other ``annotations/*.json`` (captions, keypoints) are ignored.

Episodes:

* The object is the category (``object_id`` = category id). Categories are split by identity
  (``split_objects``), so val categories are never seen in training. With a train and a val file,
  a train category takes its frames only from the train file's images, a val one only from the
  val file's: an image never serves both splits.
* Per image, the category's box is its largest instance; other instances of that category in the
  image stay unlabelled. Crowd annotations (``iscrowd: 1``) are not instances.
* References: the images of a category are ranked by that largest instance's area (largest
  first, ties by image id); the top ones (up to 3, always leaving at least one frame) are cropped
  around the box with a context margin and written to ``crop_dir/<object_id>/``. Every other
  image becomes a search frame, so a reference never comes from the frame it is used with.
  Each frame is its own sequence (``<object_id>_img<image_id>``, frame index 0).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.cli import UserError
from pipeline.data.formats.common import Box, Frame, Problem, ReadResult
from pipeline.data.decode import BadImage, load_upright_rgb

MAX_REFERENCES = 3
# Context around a reference crop, as a share of the box side on each side (the templates the
# detector is trained with show some background around the object too).
CROP_MARGIN = 0.15
CROP_QUALITY = 95

SplitObjects = Callable[[list[str]], dict[str, str]]


@dataclass(frozen=True)
class _Instance:
    """The largest instance of one category in one image."""

    json_path: Path
    ann_id: Any
    split: str | None
    image_id: int
    image: Path
    box: Box

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def annotation_files(root: Path) -> list[tuple[Path, str | None, Path]]:
    """``(json, split, image folder)`` for every ``annotations/instances_*.json``."""
    files = sorted((root / "annotations").glob("instances_*.json"))
    if not files:
        raise UserError(f"{root / 'annotations'}: no instances_*.json (COCO layout)")
    out = []
    for path in files:
        name = path.stem[len("instances_") :]
        split = "train" if "train" in name else "val" if "val" in name else None
        if len(files) > 1 and split is None:
            raise UserError(
                f"{path}: cannot tell its split; with several annotation files, their names must "
                "contain train or val (instances_train2017.json)"
            )
        candidates = [root / "images" / name, root / name, root / "images"]
        folder = next((c for c in candidates if c.is_dir()), None)
        if folder is None:
            looked = ", ".join(map(str, candidates))
            raise UserError(f"{path}: no image folder, looked for {looked}")
        out.append((path, split, folder))
    splits = [s for _, s, _ in out]
    for split in set(splits):
        if splits.count(split) > 1:
            where = root / "annotations"
            raise UserError(f"{where}: more than one instances_*.json for split {split}")
    return out


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _load(path: Path, problems: list[Problem]) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(Problem(path, None, f"not a readable JSON file ({exc})"))
        return None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        reason = "not a COCO instances file (needs lists images, annotations, categories)"
        problems.append(Problem(path, None, reason))
        return None
    return data


def read_instances(
    path: Path, split: str | None, folder: Path, problems: list[Problem]
) -> dict[str, dict[int, _Instance]]:
    """Category id -> image id -> largest valid instance, from one annotation file."""
    data = _load(path, problems)
    if data is None:
        return {}
    images: dict[int, Path] = {}
    for entry in data["images"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            problems.append(Problem(path, None, f"image entry without id/file_name: {entry!r:.80}"))
        elif entry["id"] in images:
            problems.append(Problem(path, None, f"image id {entry['id']} appears twice"))
        else:
            images[entry["id"]] = folder / entry["file_name"]
    categories = {c["id"] for c in data["categories"] if isinstance(c, dict) and "id" in c}
    out: dict[str, dict[int, _Instance]] = {}
    for ann in data["annotations"]:
        if isinstance(ann, dict) and ann.get("iscrowd", 0):
            continue  # a crowd region is not one instance: neither a target nor a reference
        reason = _annotation_problem(ann, images, categories)
        if reason is not None:
            problems.append(Problem(path, None, reason))
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        image_id = ann["image_id"]
        box = (x, y, x + w, y + h)
        inst = _Instance(path, ann.get("id"), split, image_id, images[image_id], box)
        per_image = out.setdefault(str(ann["category_id"]), {})
        best = per_image.get(image_id)
        if best is None or inst.area > best.area:
            per_image[image_id] = inst
    return out


def _annotation_problem(ann: Any, images: dict, categories: set) -> str | None:
    """What is wrong with one annotation, or ``None``."""
    if not isinstance(ann, dict):
        return f"annotation is not a mapping: {ann!r:.80}"
    where = f"annotation {ann.get('id')}"
    bbox = ann.get("bbox")
    if ann.get("image_id") not in images:
        return f"{where}: unknown image_id {ann.get('image_id')!r}"
    if ann.get("category_id") not in categories:
        return f"{where}: unknown category_id {ann.get('category_id')!r}"
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_number, bbox)):
        return f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r:.80}"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return f"{where}: empty box (width {bbox[2]:g}, height {bbox[3]:g})"
    return None


def crop_reference(inst: _Instance, out_path: Path) -> None:
    """Crop ``inst``'s box with :data:`CROP_MARGIN` context (clipped to the image) to a JPEG."""
    img = load_upright_rgb(inst.image)
    x1, y1, x2, y2 = inst.box
    mx, my = CROP_MARGIN * (x2 - x1), CROP_MARGIN * (y2 - y1)
    left, top = max(0, math.floor(x1 - mx)), max(0, math.floor(y1 - my))
    right, bottom = min(img.width, math.ceil(x2 + mx)), min(img.height, math.ceil(y2 + my))
    if right <= left or bottom <= top:
        where = f"annotation {inst.ann_id}: box {list(inst.box)}"
        raise BadImage(f"{where} is outside the {img.width}x{img.height} image")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    img.crop((left, top, right, bottom)).save(out_path, quality=CROP_QUALITY)


def read_coco(root: Path, crop_dir: Path, split_objects: SplitObjects) -> ReadResult:
    """Read COCO annotations into episodes (see the module docstring); reference crops are
    written under ``crop_dir``. ``split_objects`` maps category ids to ``train``/``val``."""
    result = ReadResult()
    by_category: dict[str, list[_Instance]] = {}
    for path, split, folder in annotation_files(root):
        for cat, per_image in read_instances(path, split, folder, result.problems).items():
            by_category.setdefault(cat, []).extend(per_image.values())
    split_of = split_objects(sorted(by_category, key=_category_order))
    for cat in sorted(by_category, key=_category_order):
        split = split_of[cat]
        ranked = sorted(
            (i for i in by_category[cat] if i.split in (split, None)),
            key=lambda i: (-i.area, i.image_id),
        )
        refs: list[Path] = []
        used = 0
        # Leave at least one image behind as a frame, or the category has no episode at all.
        while used < len(ranked) - 1 and len(refs) < MAX_REFERENCES:
            inst = ranked[used]
            used += 1
            out_path = crop_dir / cat / f"ref{len(refs) + 1}_img{inst.image_id}.jpg"
            try:
                crop_reference(inst, out_path)
            except BadImage as exc:
                result.problems.append(Problem(inst.image, None, str(exc)))
                continue
            refs.append(out_path)
        if refs:
            result.templates[cat] = refs
        for inst in sorted(ranked[used:], key=lambda i: i.image_id):
            result.frames.append(
                Frame(
                    split=split,
                    object_id=cat,
                    sequence_id=f"{cat}_img{inst.image_id}",
                    frame_index=0,
                    image=inst.image,
                    box=inst.box,
                    label=inst.json_path,
                    label_note=f"annotation {inst.ann_id}",
                )
            )
    return result



def _category_order(cat: str) -> tuple[int, str]:
    # Numeric ids sort as numbers (2 before 10); any other id still sorts deterministically.
    return len(cat), cat
