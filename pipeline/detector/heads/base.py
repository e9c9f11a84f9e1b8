"""The interface every head implements: outputs, loss and decoding to boxes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

__all__ = ["Head", "HeadInputs"]


@dataclass
class HeadInputs:
    """What the detector hands its head for a batch of ``B`` search images.

    Attributes:
        features: neck maps of the search images per level, finest first, ``[B, C, h_l, w_l]``.
        correlations: the correlation of each level with the fused templates, ``[B, C, h_l, w_l]``.
        similarities: further maps at the finest grid, ``[B, n_i, H0, W0]`` (features' dtype).
        level_weights: ``[levels]`` fp32, summing to 1: how much each level counts.
        image_size: ``(H, W)`` of the search input.
        templates: the fused reference maps per level, ``[B, C, h_l, w_l]`` (what the
            correlations compared the search maps with).
    """

    features: Sequence[Tensor]
    correlations: Sequence[Tensor]
    similarities: Sequence[Tensor]
    level_weights: Tensor
    image_size: tuple[int, int]
    templates: Sequence[Tensor] = ()


class Head(nn.Module):
    """``forward(HeadInputs) -> dict`` with at least ``logits [B, H0, W0]``, ``boxes [B, H0*W0, 4]``
    xyxy input pixels, ``stride`` and ``image_size``; :meth:`criterion` scores those outputs
    against targets, :meth:`decode` turns them into boxes per image."""

    stride: int
    #: How :meth:`decode` picks boxes, so that an exported graph's caller can do the same:
    #: ``"nms"`` (top-k, threshold, NMS: dense heads) or ``"top"`` (best scores, no NMS: set heads).
    decoding: str = "nms"

    def criterion(self, iou_type: str, focal_alpha: float, focal_gamma: float, pos_radius: int) -> nn.Module:
        """The loss: ``criterion(outputs, targets) -> {name: unweighted fp32 scalar}``."""
        raise NotImplementedError

    def decode(self, outputs: dict[str, Any], score_threshold: float, nms_iou: float,
               max_detections: int) -> list[tuple[Tensor, Tensor]]:
        """Per image ``(boxes [N, 4] xyxy, scores [N])``, best first, ``N <= max_detections``."""
        raise NotImplementedError
