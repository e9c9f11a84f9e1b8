"""What every template fusion shares: a weighted mean of the valid templates' maps."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.config import PartConfig

from ..tracing import exporting

__all__ = ["TemplateFusion", "FusionConfig"]


@dataclass(frozen=True)
class FusionConfig(PartConfig):
    """``model.fusion``: which fusion (no further keys)."""

    type: str = "attention"


class TemplateFusion(nn.Module):
    """Weighted mean over K template maps; subclasses give the weights (:meth:`template_weights`).

    ``forward(features: [B, K, C, h, w], mask: [B, K] bool | None) -> [B, C, h, w]``. Padded
    templates (mask False) get weight 0 and may hold anything, NaN included. Every sample needs at
    least one real template (checked, except while exporting: a data-dependent branch
    ``torch.export`` cannot trace; the ONNX model's caller checks the mask instead).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)

    def template_weights(self, features: Tensor, mask: Tensor) -> Tensor:
        """``[B, K]`` weights summing to 1 over the valid templates, 0 on padded ones."""
        raise NotImplementedError

    def weights(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """Checked inputs -> :meth:`template_weights` ``[B, K]``."""
        if features.dim() != 5:
            raise ValueError(f"{type(self).__name__}: expected features [B, K, C, h, w], got {tuple(features.shape)}")
        b, k = features.shape[:2]
        if mask is None:
            mask = torch.ones(b, k, dtype=torch.bool, device=features.device)
        elif mask.shape != (b, k):
            raise ValueError(f"{type(self).__name__}: mask shape {tuple(mask.shape)} != (B, K) = {(b, k)}")
        mask = mask.bool()
        if not exporting() and not bool(mask.any(dim=1).all()):
            raise ValueError(f"{type(self).__name__}: every sample needs at least one valid template (mask row all False)")
        return self.template_weights(features, mask)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        w = self.weights(features, mask).to(features.dtype)
        if mask is not None:
            features = features.masked_fill(~mask.bool()[:, :, None, None, None], 0)
        return torch.einsum("bk,bkchw->bchw", w, features)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
