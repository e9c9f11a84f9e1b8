"""Learned attention over the templates (``model.fusion.type: attention``)."""

from __future__ import annotations

from torch import Tensor, nn

from ..registry import FUSIONS
from .base import FusionConfig, TemplateFusion

__all__ = ["AttentionFusion", "build_attention_fusion"]


class AttentionFusion(TemplateFusion):
    """Weights are a softmax over the valid templates of a learned score per template
    (global-average-pooled features -> MLP ``C -> C/4 -> 1``). The last layer starts at zero, so
    an untrained attention fusion equals the average. Invariant to the order of the templates."""

    def __init__(self, channels: int):
        super().__init__(channels)
        hidden = max(1, self.channels // 4)
        self.score = nn.Sequential(nn.Linear(self.channels, hidden), nn.GELU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.score[-1].weight)
        nn.init.zeros_(self.score[-1].bias)

    def template_weights(self, features: Tensor, mask: Tensor) -> Tensor:
        pooled = features.float().mean(dim=(3, 4))  # [B, K, C]
        scores = self.score(pooled.to(features.dtype)).squeeze(-1).float()  # [B, K]
        return scores.masked_fill(~mask, float("-inf")).softmax(dim=1)


@FUSIONS.register("attention", FusionConfig)
def build_attention_fusion(cfg: FusionConfig, channels: int) -> AttentionFusion:
    return AttentionFusion(channels)
