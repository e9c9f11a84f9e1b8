"""Appearance embeddings of boxes: the detector's own features, RoI-pooled, as a tracker compares
candidates over time (:mod:`pipeline.inference.tracker`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

#: RoIAlign output side before the mean: a 2 x 2 grid is enough to average over a 40-100 px box.
_POOL = 2


def embed_boxes(features: Tensor, boxes: Sequence[Tensor], image_width: int) -> list[Tensor]:
    """L2-normalised embeddings of each image's boxes.

    Args:
        features: ``[B, C, H, W]`` map over the (padded) search input.
        boxes: per image ``[N_i, 4]`` xyxy in search-input pixels.
        image_width: the search input's width in pixels; the map's stride is the power of two
            closest to ``image_width / W``.

    Returns:
        per image ``[N_i, C]`` fp32.
    """
    stride = 2 ** round(math.log2(image_width / features.shape[-1]))
    rois = [b.float() for b in boxes]
    pooled = roi_align(features.float(), rois, _POOL, spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)
    flat = F.normalize(pooled.mean((2, 3)), dim=1)
    return list(torch.split(flat, [len(b) for b in boxes]))
