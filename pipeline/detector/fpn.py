"""Feature pyramid over the backbone's levels (thin wrapper of torchvision's FPN)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

__all__ = ["FPN"]


class FPN(nn.Module):
    """Top-down feature pyramid (Lin et al. 2017), via :class:`torchvision.ops.FeaturePyramidNetwork`.

    Args:
        in_channels: channels of each input level, finest first (``Backbone.channels``).
        out_channels: channels of every output level.

    ``forward(features: list of [B, in_channels[i], H_i, W_i], finest first)`` returns a list of
    ``[B, out_channels, H_i, W_i]`` with the same spatial sizes. Coarser maps are upsampled
    (nearest) to the size of the finer one, so sizes need not be exact multiples of each other.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_channels = int(out_channels)
        self.fpn = FeaturePyramidNetwork(self.in_channels, self.out_channels)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != len(self.in_channels):
            raise ValueError(f"FPN: expected {len(self.in_channels)} feature maps, got {len(features)}")
        out = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))
        return list(out.values())
