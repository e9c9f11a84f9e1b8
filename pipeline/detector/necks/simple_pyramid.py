"""ViTDet's simple feature pyramid: pyramid levels built from one (ViT) feature map."""

from __future__ import annotations

import math
from collections.abc import Sequence

from timm.layers import LayerNorm2d
from torch import Tensor, nn

from ..registry import NECKS
from .fpn import NeckConfig

__all__ = ["SimplePyramid"]


def _norm(channels: int) -> nn.Module:
    # A channels-first LayerNorm, as ViTDet uses: it normalises each position on its own, like the
    # ViT's token LayerNorm the features come from, whereas GroupNorm would pool statistics over
    # the whole image, where a few small objects hardly register.
    return LayerNorm2d(channels)


def _resample(channels: int, ratio: float) -> tuple[nn.Module, int]:
    """The layers that scale a ``channels`` map by ``ratio`` (a power of two), and their output
    channels: one 2x transposed conv per doubling (halving channels each time; norm + GELU between
    them), a max pool for a downscale, nothing for 1."""
    if ratio >= 1:
        layers: list[nn.Module] = []
        c = channels
        for i in range(round(math.log2(ratio))):
            if i:
                layers += [_norm(c), nn.GELU()]
            layers.append(nn.ConvTranspose2d(c, max(c // 2, 1), kernel_size=2, stride=2))
            c = max(c // 2, 1)
        return (nn.Sequential(*layers) if layers else nn.Identity()), c
    k = round(1 / ratio)
    return nn.MaxPool2d(kernel_size=k, stride=k), channels


class SimplePyramid(nn.Module):
    """Simple feature pyramid of ViTDet (Li et al. 2022, "Exploring Plain Vision Transformer
    Backbones for Object Detection").

    Only the last (coarsest) input map is used; a ViT gives just one. For each level ``L`` (output
    stride ``2**L``) with stride ratio ``r = in_stride / 2**L``: ``r = 4``: deconv 2x -> norm -> GELU
    -> deconv 2x; ``r = 2``: one deconv 2x; ``r = 1``: the map itself; ``r = 1/2``: 2x2 max pool (and
    likewise for any power of two). Each deconv halves the channels. Every branch then ends in a
    1x1 conv to ``out_channels`` + norm and a 3x3 conv + norm.

    Args:
        in_channels: channels of each input map, finest first (``Backbone.channels``).
        in_strides: stride of each input map (``Backbone.strides``); the last must be a power of two.
        out_channels: channels of every output map.
        levels: strictly increasing output levels; level ``L`` is the map of stride ``2**L``.

    Attributes:
        in_channels, out_channels, levels: the arguments.
        strides: ``[2**L for L in levels]``.

    ``forward(features: list of [B, in_channels[i], H_i, W_i], finest first)`` returns, finest first,
    ``[B, out_channels, h * r_i, w * r_i]`` for the last map's ``h x w`` (``floor(h * r_i)`` when
    pooling).
    """

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], out_channels: int, levels: Sequence[int]):
        super().__init__()
        self.in_channels = [int(c) for c in in_channels]
        in_strides = [int(s) for s in in_strides]
        self.out_channels = int(out_channels)
        self.levels = [int(lvl) for lvl in levels]
        if not self.in_channels or len(in_strides) != len(self.in_channels):
            raise ValueError(f"SimplePyramid: in_channels {self.in_channels} and in_strides {in_strides} "
                             f"must be non-empty and of the same length")
        if self.out_channels < 1:
            raise ValueError(f"SimplePyramid: out_channels must be positive, got {self.out_channels}")
        if not self.levels:
            raise ValueError("SimplePyramid: levels must not be empty")
        if sorted(set(self.levels)) != self.levels or self.levels[0] < 0:
            raise ValueError(f"SimplePyramid: levels {self.levels} must be strictly increasing and >= 0")
        stride = in_strides[-1]
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"SimplePyramid: input stride {stride} is not a power of two, so stride "
                             f"ratios {[f'{stride}/{2**lvl}' for lvl in self.levels]} are not either")
        self.strides = [2**lvl for lvl in self.levels]
        c = self.in_channels[-1]
        branches = []
        for s in self.strides:
            resample, c_mid = _resample(c, stride / s)
            branches.append(nn.Sequential(
                resample,
                nn.Conv2d(c_mid, self.out_channels, 1, bias=False), _norm(self.out_channels),
                nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1, bias=False), _norm(self.out_channels),
            ))
        self.branches = nn.ModuleList(branches)

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        if len(features) != len(self.in_channels):
            raise ValueError(f"SimplePyramid: expected {len(self.in_channels)} feature maps, got {len(features)}")
        x = features[-1]
        return [branch(x) for branch in self.branches]

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, levels={self.levels}, "
                f"strides={self.strides}")


@NECKS.register("simple_pyramid", NeckConfig)
def build_simple_pyramid(cfg: NeckConfig, in_channels: Sequence[int], in_strides: Sequence[int],
                         levels: Sequence[int]) -> SimplePyramid:
    """The levels from the backbone's last (a ViT's only) map."""
    return SimplePyramid(in_channels, in_strides, cfg.channels, levels)
