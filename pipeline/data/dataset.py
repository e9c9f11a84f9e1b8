"""Torch datasets over the prepared manifest: training crops and whole evaluation frames.

Boxes are ``(x1, y1, x2, y2)`` in pixels of the tensor the model sees. Training uses square crops
of the frame (SiamFC-style search regions): a crop costs a fraction of a 1024x576 frame, so two CPU
cores see many more examples per minute, and the fully convolutional detector runs on whole frames
at evaluation time with the same weights.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from pipeline.cli import UserError
from pipeline.data.augment import identity_augmentation, search_augmentation, template_augmentation
from pipeline.data.frames import Sample, read_frame, read_rgb, resize, to_tensor_array
from pipeline.data.manifest import BOX, read_manifest, read_templates
from pipeline.paths import Paths

#: A crop keeps the target as "present" only if this share of its box is inside the crop.
MIN_VISIBLE = 0.6


def load_samples(manifest: pd.DataFrame, templates: pd.DataFrame, split: str) -> list[Sample]:
    """Join manifest rows of ``split`` with the resized templates of their objects.

    ``templates`` is ``data/templates/templates.csv`` (columns object_id, index, path, ...).
    """
    by_object: dict[str, tuple[str, ...]] = {
        str(obj): tuple(group.sort_values("index")["path"].astype(str))
        for obj, group in templates.groupby("object_id")
    }
    rows = manifest[manifest["split"] == split]
    samples = []
    for row in rows.itertuples(index=False):
        obj = str(row.object_id)
        if obj not in by_object:
            raise UserError(f"object {obj!r} (frame {row.image}) has no resized templates; re-run resize_templates")
        box_values = [getattr(row, c) for c in BOX]
        box = None if any(pd.isna(v) for v in box_values) else tuple(float(v) for v in box_values)
        samples.append(
            Sample(
                image=str(row.image),
                object_id=obj,
                sequence_id=str(row.sequence_id),
                frame_index=int(row.frame_index),
                box=box,  # type: ignore[arg-type]
                templates=by_object[obj],
                width=int(row.width),
                height=int(row.height),
            )
        )
    return samples


def load_split(paths: Paths, split: str | None) -> list[Sample]:
    """The prepared samples of ``split`` (None = every split) under ``paths``, checked before use:
    missing inputs or files are UserErrors naming them (not a DataLoader worker's traceback later).
    Relative file paths are resolved against ``paths.root``."""
    if not paths.manifest.is_file():
        raise UserError(f"{paths.manifest}: not found; run the prepare stage first (dvc repro prepare)")
    if not paths.templates_manifest.is_file():
        raise UserError(f"{paths.templates_manifest}: not found; run resize_templates first")
    manifest = read_manifest(paths.manifest)
    templates = read_templates(paths.templates_manifest)
    splits = [split] if split is not None else sorted(set(manifest["split"]))
    samples = [s for name in splits for s in load_samples(manifest, templates, name)]
    if not samples:
        raise UserError(f"{paths.manifest}: the {split or 'whole'} split is empty")
    if paths.root != Path("."):
        def resolve(p: str) -> str:
            return p if Path(p).is_absolute() else str(paths.root / p)

        samples = [replace(s, image=resolve(s.image), templates=tuple(map(resolve, s.templates))) for s in samples]
    files = {s.image for s in samples} | {t for s in samples for t in s.templates}
    missing = sorted(f for f in files if not Path(f).is_file())
    if missing:
        raise UserError(f"{missing[0]}: listed in the prepared data but missing ({len(missing)} files); "
                        "re-run the data stages (dvc repro)")
    return samples


def _scale_box(box, sx: float, sy: float):
    if box is None:
        return None
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def _read_templates(paths: Sequence[str], size: int, aug=None, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Reference photos as ``size x size`` RGB uint8, augmented with ``aug`` when ``rng`` is given."""
    out = []
    for path in paths:
        image = resize(read_rgb(path), (size, size))
        if aug is not None and rng is not None:
            aug.set_random_seed(int(rng.integers(2**31)))
            image = aug(image=image)["image"]
        out.append(image)
    return out


def _load_templates(paths: Sequence[str], size: int) -> np.ndarray:
    """Reference photos as ``[K, 3, size, size]`` float32 in [0, 1]."""
    return np.stack([to_tensor_array(t) for t in _read_templates(paths, size)])


def _visible_share(box, x0: int, y0: int, size: int) -> float:
    ix = max(0.0, min(box[2], x0 + size) - max(box[0], x0))
    iy = max(0.0, min(box[3], y0 + size) - max(box[1], y0))
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    return ix * iy / area


def choose_crop(
    box, width: int, height: int, size: int, background_prob: float, rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left corner of a ``size`` square crop: around the target, or anywhere (background)."""
    max_x, max_y = max(0, width - size), max(0, height - size)
    if box is not None and rng.random() >= background_prob:
        # Any crop that fully contains the box, uniformly; centre on it when it does not fit.
        lo_x, hi_x = max(0.0, box[2] - size), min(box[0], float(max_x))
        lo_y, hi_y = max(0.0, box[3] - size), min(box[1], float(max_y))
        x0 = rng.uniform(lo_x, hi_x) if lo_x <= hi_x else (box[0] + box[2] - size) / 2
        y0 = rng.uniform(lo_y, hi_y) if lo_y <= hi_y else (box[1] + box[3] - size) / 2
        return int(np.clip(round(x0), 0, max_x)), int(np.clip(round(y0), 0, max_y))
    return int(rng.integers(0, max_x + 1)), int(rng.integers(0, max_y + 1))


def crop(image: np.ndarray, box, x0: int, y0: int, size: int):
    """Cut a square crop (padding with zeros past the frame); the box is kept only if mostly inside."""
    h, w = image.shape[:2]
    out = np.zeros((size, size, 3), dtype=image.dtype)
    patch = image[y0 : min(h, y0 + size), x0 : min(w, x0 + size)]
    out[: patch.shape[0], : patch.shape[1]] = patch
    if box is None or _visible_share(box, x0, y0, size) < MIN_VISIBLE:
        return out, None
    clipped = (
        max(0.0, box[0] - x0),
        max(0.0, box[1] - y0),
        min(float(size), box[2] - x0),
        min(float(size), box[3] - y0),
    )
    return out, clipped


class TrainDataset(Dataset):
    """Augmented training samples: a search crop (or whole frame) and the object's templates.

    Randomness comes from ``(seed, epoch, index)`` alone, so any worker count, a resumed run and a
    straight run see the same samples. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        template_size: int,
        search_size: tuple[int, int],
        crop_size: int,
        background_crop_prob: float,
        augment: bool,
        seed: int,
        identity_aug: float = 0.0,
    ) -> None:
        self.samples = list(samples)
        self.template_size = template_size
        self.search_size = tuple(search_size)
        self.crop_size = crop_size
        self.background_crop_prob = background_crop_prob
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._search_aug = search_augmentation() if augment else None
        self._template_aug = template_augmentation() if augment else None
        most = max((len(s.templates) for s in self.samples), default=1)
        self._identity_aug = identity_augmentation(identity_aug, most) if augment and identity_aug > 0 else None
        self._object_codes = object_codes(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, sx, sy = read_frame(sample, self.search_size)
        box = _scale_box(sample.box, sx, sy)
        if self.crop_size > 0:
            h, w = image.shape[:2]
            x0, y0 = choose_crop(box, w, h, self.crop_size, self.background_crop_prob, rng)
            image, box = crop(image, box, x0, y0, self.crop_size)
        if self._search_aug is not None:
            self._search_aug.set_random_seed(int(rng.integers(2**31)))
            result = self._search_aug(image=image, bboxes=[box] if box else np.zeros((0, 4)), labels=[0] if box else [])
            image = result["image"]
            box = tuple(float(v) for v in result["bboxes"][0]) if len(result["bboxes"]) else None
        templates = _read_templates(sample.templates, self.template_size, self._template_aug, rng)
        if self._identity_aug is not None:
            self._identity_aug.set_random_seed(int(rng.integers(2**31)))
            out = self._identity_aug(image=image, **{f"template{i}": t for i, t in enumerate(templates)})
            image, templates = out["image"], [out[f"template{i}"] for i in range(len(templates))]
        templates = np.stack([to_tensor_array(t) for t in templates])
        return _pack(image, box, templates, index, self._object_codes[sample.object_id])


class EvalDataset(Dataset):
    """Whole frames resized to ``search_size``; ``scale`` maps boxes back to original pixels."""

    def __init__(self, samples: Sequence[Sample], template_size: int, search_size: tuple[int, int]) -> None:
        self.samples = list(samples)
        self.template_size = template_size
        self.search_size = tuple(search_size)
        self._object_codes = object_codes(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image, sx, sy = read_frame(sample, self.search_size)
        templates = _load_templates(sample.templates, self.template_size)
        item = _pack(image, _scale_box(sample.box, sx, sy), templates, index, self._object_codes[sample.object_id])
        item["scale"] = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
        return item


def object_codes(samples: Sequence[Sample]) -> dict[str, int]:
    """A small integer per object id (tensors cannot hold strings)."""
    return {obj: i for i, obj in enumerate(sorted({s.object_id for s in samples}))}


def _pack(image: np.ndarray, box, templates: np.ndarray, index: int, object_code: int) -> dict:
    return {
        "search": torch.from_numpy(to_tensor_array(image)),
        "templates": torch.from_numpy(templates),
        "boxes": torch.tensor(box if box is not None else [float("nan")] * 4, dtype=torch.float32),
        "present": torch.tensor(box is not None),
        "index": torch.tensor(index),
        "object": torch.tensor(object_code),
    }


def collate(batch: list[dict]) -> dict:
    """Stack samples; templates are padded to the largest K in the batch with a validity mask.

    Returns search [B,3,H,W], templates [B,K,3,T,T], template_mask [B,K] bool, boxes [B,4] (NaN when
    absent), present [B] bool, index [B], object [B] (object code), and scale [B,4] for
    evaluation batches.
    """
    k_max = max(item["templates"].shape[0] for item in batch)
    t_shape = batch[0]["templates"].shape[1:]
    templates = torch.zeros((len(batch), k_max, *t_shape))
    mask = torch.zeros((len(batch), k_max), dtype=torch.bool)
    for i, item in enumerate(batch):
        k = item["templates"].shape[0]
        templates[i, :k] = item["templates"]
        mask[i, :k] = True
    out = {key: torch.stack([item[key] for item in batch]) for key in batch[0] if key != "templates"}
    out["templates"] = templates
    out["template_mask"] = mask
    return out
