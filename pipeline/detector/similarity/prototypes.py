"""Prototype matching (``model.similarities.prototypes``): how well each search cell matches its
nearest parts of the template.

A template pooled to one vector (``corr_kernel: 1``) averages a striped pink-and-yellow object
into one muddy colour; a spatial k×k kernel has a fixed scale and orientation. Here the template
map is pooled to ``grid × grid`` part vectors (its centre only, where the object is in a
reference photo), every search cell takes the cosine similarity to each part, and the ``top``
best similarities per cell are kept, sorted. The result is invariant to the order of parts, so
to rotation and flips of the object, and keeps its palette.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.config import PartConfig, bounds

from ..registry import SIMILARITIES
from .base import Similarity, resize

__all__ = ["prototype_similarity", "PrototypeMatching", "PrototypesConfig", "build_prototypes"]


def prototype_similarity(search: Tensor, template: Tensor, grid: int, top: int, center: float = 1.0) -> Tensor:
    """Sorted top-``top`` cosine similarities of each search cell to the template's part vectors.

    Args:
        search: ``[B, C, H, W]`` search features.
        template: ``[B, C, h, w]`` (fused) template features.
        grid: the template's central region is average-pooled to ``grid × grid`` part vectors.
        top: how many of the best similarities to keep per cell (at most ``grid**2``).
        center: side of the central region used, as a fraction of the template map (0 < c <= 1).

    Returns:
        ``[B, top, H, W]``, channel 0 the best match, values in ``[-1, 1]``.
    """
    h, w = template.shape[-2:]
    ch, cw = max(1, round(h * center)), max(1, round(w * center))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    parts = F.adaptive_avg_pool2d(template[..., y0 : y0 + ch, x0 : x0 + cw], grid).flatten(2)  # [B, C, N]
    parts = F.normalize(parts.float(), dim=1)
    cells = F.normalize(search.float(), dim=1)
    sim = torch.einsum("bcn,bchw->bnhw", parts, cells)
    return sim.topk(min(top, sim.shape[1]), dim=1).values


class PrototypeMatching(Similarity):
    """The level-weighted sum over levels of :func:`prototype_similarity`: ``top`` maps; no parameters."""

    def __init__(self, grid: int, top: int, center: float = 0.7):
        super().__init__()
        if grid < 1 or not 1 <= top <= grid * grid:
            raise ValueError(f"PrototypeMatching: need grid >= 1 and 1 <= top <= grid**2, got {grid}, {top}")
        self.grid, self.top, self.center = int(grid), int(top), float(center)
        self.channels = self.top

    def forward(self, search: Tensor, features: Sequence[Tensor], fused: Sequence[Tensor], encoded: Tensor | None,
                level_weights: Tensor) -> Tensor:
        size0 = features[0].shape[-2:]
        out = None
        for w, f, t in zip(level_weights, features, fused):
            m = resize(prototype_similarity(f, t, self.grid, self.top, self.center), size0) * w
            out = m if out is None else out + m
        return out

    def extra_repr(self) -> str:
        return f"grid={self.grid}, top={self.top}, center={self.center}"


@dataclass(frozen=True)
class PrototypesConfig(PartConfig):
    """``model.similarities.prototypes``: ``grid`` x ``grid`` parts, the ``top`` best per cell."""

    type: str = "prototypes"
    grid: int = field(default=4, metadata=bounds(1))
    top: int = field(default=4, metadata=bounds(1))


@SIMILARITIES.register("prototypes", PrototypesConfig)
def build_prototypes(cfg: PrototypesConfig, stride: int) -> PrototypeMatching:
    return PrototypeMatching(cfg.grid, min(cfg.top, cfg.grid**2))
