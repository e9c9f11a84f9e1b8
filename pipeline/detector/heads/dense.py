"""Anchor-free detection head (FCOS-style) and box decoding.

Box parameterisation: for the cell in row ``i``, column ``j`` of a map of stride ``s`` the centre is
``((j + 0.5) * s, (i + 0.5) * s)`` in input pixels. The head predicts the distances from that centre
to the four box sides, ``(l, t, r, b) = softplus(raw) * s`` (pixels, always > 0). ``softplus`` is
smooth, unbounded and cannot overflow like ``exp``; multiplying by the stride makes the raw output
"cells", so the same head works at any stride. The raw box bias is initialised so that the initial
distances are ``box_prior`` cells (default: 4 cells, i.e. a 32 px box at stride 4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DetectionHead", "ltrb_from_raw", "decode_boxes", "cell_centers", "PRIOR_PROB"]

PRIOR_PROB = 0.01  # initial objectness probability (focal-loss prior, Lin et al. 2017)


def _group_count(channels: int) -> int:
    """Most GroupNorm groups (<= 32) that divide ``channels`` with >= 4 channels per group."""
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 4:
            return g
    return 1


def _softplus_inv(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class DetectionHead(nn.Module):
    """``num_convs`` x (3x3 conv -> GroupNorm -> GELU), then two 3x3 convs: objectness and box.

    Args:
        in_channels: channels of the input map.
        channels: channels of the hidden convs (``head_channels``).
        num_convs: number of hidden conv blocks (shared by both outputs).
        box_prior: initial side distance, in cells (see module docstring).

    ``forward(x: [B, in_channels, H, W]) -> (logits [B, 1, H, W], raw_box [B, 4, H, W])``.
    The objectness bias starts at ``-log((1 - p) / p)`` with ``p = 0.01`` (= -4.595), so that at
    initialisation every cell predicts a 1 % object probability. Turn ``raw_box`` into pixel
    distances with :func:`ltrb_from_raw`.
    """

    def __init__(self, in_channels: int, channels: int = 64, num_convs: int = 2, box_prior: float = 4.0):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(c, channels, 3, padding=1), nn.GroupNorm(_group_count(channels), channels), nn.GELU()]
            c = channels
        self.tower = nn.Sequential(*layers)
        self.obj = nn.Conv2d(c, 1, 3, padding=1)
        self.box = nn.Conv2d(c, 4, 3, padding=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.obj.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))
        nn.init.constant_(self.box.bias, _softplus_inv(box_prior))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.tower(x)
        return self.obj(x), self.box(x)


def ltrb_from_raw(raw: Tensor, stride: int) -> Tensor:
    """Side distances in pixels: ``softplus(raw) * stride``, computed in fp32. ``[B, 4, H, W]``."""
    return F.softplus(raw.float()) * float(stride)


def cell_centers(height: int, width: int, stride: int, device=None, dtype=torch.float32) -> Tensor:
    """Cell centres ``[H * W, 2]`` as ``(x, y)`` pixels, row-major: index ``i * W + j`` is
    ``((j + 0.5) * stride, (i + 0.5) * stride)``."""
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) * stride
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def decode_boxes(ltrb: Tensor, stride: int) -> Tensor:
    """Boxes from per-cell side distances.

    Args:
        ltrb: ``[B, 4, H, W]`` distances (pixels) from each cell centre to the left, top, right and
            bottom box sides.
        stride: pixels per cell.

    Returns:
        ``[B, H * W, 4]`` boxes ``(x1, y1, x2, y2)`` in input pixels, cells in row-major order
        (index ``i * W + j``); not clipped to the image.
    """
    b, four, h, w = ltrb.shape
    if four != 4:
        raise ValueError(f"decode_boxes: expected ltrb [B, 4, H, W], got {tuple(ltrb.shape)}")
    c = cell_centers(h, w, stride, device=ltrb.device, dtype=ltrb.dtype)  # [HW, 2]
    d = ltrb.flatten(2).transpose(1, 2)  # [B, HW, 4]
    return torch.cat([c - d[..., :2], c + d[..., 2:]], dim=-1)
