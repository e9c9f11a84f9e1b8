"""Plain mean of the valid templates (``model.fusion.type: average``)."""

from __future__ import annotations

from torch import Tensor

from ..registry import FUSIONS
from .base import FusionConfig, TemplateFusion

__all__ = ["AverageFusion", "build_average_fusion"]


class AverageFusion(TemplateFusion):
    """Every valid template counts the same; no parameters."""

    def template_weights(self, features: Tensor, mask: Tensor) -> Tensor:
        w = mask.float()
        return w / w.sum(dim=1, keepdim=True)


@FUSIONS.register("average", FusionConfig)
def build_average_fusion(cfg: FusionConfig, channels: int) -> AverageFusion:
    return AverageFusion(channels)
