"""The interface of a similarity: extra per-cell maps of how the search matches the references."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Similarity", "resize"]


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """``x [B, C, h, w]`` bilinearly resized to ``size`` (returned as is when it already fits)."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class Similarity(nn.Module):
    """``channels`` maps at the detection grid from the search image and features and the references.

    :meth:`encode` may condense the references into one tensor (e.g. a colour histogram), computed
    once per object with the fused template maps; :meth:`forward` gets it back as ``encoded``.
    """

    channels: int = 0
    encodes: bool = False  # True: encode() returns a tensor, appended to the encoded templates

    def encode(self, templates: Tensor, mask: Tensor | None) -> Tensor | None:
        """``templates [B, K, 3, T, T]`` in [0, 1], ``mask [B, K]`` -> ``[B, ...]`` or None."""
        return None

    def forward(self, search: Tensor, features: Sequence[Tensor], fused: Sequence[Tensor], encoded: Tensor | None,
                level_weights: Tensor) -> Tensor:
        """``search [B, 3, H, W]`` in [0, 1]; neck maps ``features`` and fused templates ``fused``
        per level (finest first); ``level_weights [levels]`` sum to 1 ->
        ``[B, channels, H0, W0]`` at the finest level's grid."""
        raise NotImplementedError
