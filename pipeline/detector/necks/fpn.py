"""Feature pyramid over the backbone's levels (``model.neck.type: fpn``; torchvision's FPN)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from pipeline.config import PartConfig, bounds

from ..registry import NECKS

__all__ = ["FPN", "NeckConfig", "build_fpn"]


class FPN(nn.Module):
    """Top-down feature pyramid (Lin et al. 2017), via :class:`torchvision.ops.FeaturePyramidNetwork`.

    Args:
        in_channels: channels of each input level, finest first (the backbone's ``channels``).
        out_channels: channels of every output level.
        strides: of the input (and output) levels, finest first.

    ``forward(features: list of [B, in_channels[i], H_i, W_i], finest first)`` returns a list of
    ``[B, out_channels, H_i, W_i]`` with the same spatial sizes. Coarser maps are upsampled
    (nearest) to the size of the finer one, so sizes need not be exact multiples of each other.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, strides: Sequence[int]):
        super().__init__()
        if len(strides) != len(in_channels):
            raise ValueError(f"FPN: {len(strides)} strides for {len(in_channels)} input maps")
        self.strides = [int(s) for s in strides]
        self.in_channels = list(in_channels)
        self.out_channels = int(out_channels)
        self.fpn = FeaturePyramidNetwork(self.in_channels, self.out_channels)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != len(self.in_channels):
            raise ValueError(f"FPN: expected {len(self.in_channels)} feature maps, got {len(features)}")
        out = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(features)))
        return list(out.values())


@dataclass(frozen=True)
class NeckConfig(PartConfig):
    """``model.neck``: a neck's output channels (those of every level the detector works on)."""

    type: str = "fpn"
    channels: int = field(default=64, metadata=bounds(8))


@NECKS.register("fpn", NeckConfig)
def build_fpn(cfg: NeckConfig, in_channels: Sequence[int], in_strides: Sequence[int], levels: Sequence[int]) -> FPN:
    """An FPN over backbone maps that already are the detector's ``levels`` (a CNN's)."""
    if list(in_strides) != [2**lvl for lvl in levels]:
        raise ValueError(f"neck fpn needs the backbone's maps at the strides of model.levels "
                         f"{[2**lvl for lvl in levels]}, got {list(in_strides)} (a ViT needs neck: simple_pyramid)")
    return FPN(in_channels, cfg.channels, in_strides)
