"""Dense colour similarity between the references and every place in the search image
(``model.similarities.colour``).

A detector trained from scratch on a few dozen identities learns *objectness* fast and *which
one* slowly: on the demo it found every object but picked the reference's about as often as chance
(top-1 success 0.34 with 3 objects per frame). Colour tells look-alike blobs apart and needs no
learning, so the head also gets, per cell, how well the colours around it match the references'
(a histogram back-projection, as classical trackers use next to their template score).

Colour is a 2-D histogram of chromaticity ``(r, g) = (R, G) / (R + G + B)``, which ignores
brightness (shading, exposure and a photo's gain change it; the object's colours do not); dark
pixels are left out (their chromaticity is noise). Similarity is the Bhattacharyya coefficient,
1 for equal distributions and 0 for disjoint ones. Everything here is parameter-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.config import PartConfig, bounds

from ..registry import SIMILARITIES
from .base import Similarity

#: Pixels with R + G + B below this (images in [0, 1]) carry no reliable colour.
MIN_INTENSITY = 0.15


def chroma_votes(images: Tensor, bins: int) -> Tensor:
    """One-hot chromaticity bin of every pixel: ``[N, 3, H, W]`` in [0, 1] -> ``[N, bins², H, W]``
    (all zero for pixels darker than :data:`MIN_INTENSITY`)."""
    images = images.float()
    total = images.sum(1)
    r = (images[:, 0] / total.clamp_min(1e-6)).clamp(0.0, 1 - 1e-6)
    g = (images[:, 1] / total.clamp_min(1e-6)).clamp(0.0, 1 - 1e-6)
    index = (r * bins).long() * bins + (g * bins).long()
    valid = (total >= MIN_INTENSITY).float()[..., None]
    # Scattered along the last dim and viewed as NCHW, the map is channels_last in memory, where
    # avg_pool2d is 3-4x quicker than on NCHW; this also skips one_hot's int64 map and its cast.
    votes = torch.zeros(*index.shape, bins * bins, device=images.device)
    return votes.scatter_(3, index[..., None], valid).permute(0, 3, 1, 2)


def _normalise(hist: Tensor, dim: int = 1) -> Tensor:
    """Histograms summing to 1 along ``dim``; an empty one becomes uniform."""
    total = hist.sum(dim, keepdim=True)
    uniform = torch.full_like(hist, 1.0 / hist.shape[dim])
    return torch.where(total > 0, hist / total.clamp_min(1e-12), uniform)


def template_histogram(templates: Tensor, mask: Tensor | None = None, bins: int = 8, centre: float = 0.5) -> Tensor:
    """The object's colour histogram from the central ``centre`` share of its references (where a
    reference photo shows the object), pooled over the valid references.

    templates: ``[B, K, 3, T, T]`` in [0, 1]; mask: ``[B, K]`` bool (True = real reference).
    Returns ``[B, bins²]``.
    """
    t = templates.shape[-1]
    lo, hi = int(round(t * (1 - centre) / 2)), int(round(t * (1 + centre) / 2))
    votes = chroma_votes(templates[..., lo:hi, lo:hi].flatten(0, 1), bins).sum((-2, -1))  # [B*K, bins²]
    votes = _normalise(votes).view(*templates.shape[:2], -1)
    weight = torch.ones(votes.shape[:2], device=votes.device) if mask is None else mask.float()
    return _normalise((votes * weight[..., None]).sum(1))


def colour_similarity(search: Tensor, reference: Tensor, stride: int, windows: Sequence[int], bins: int = 8) -> Tensor:
    """Per cell of a ``stride`` grid, the Bhattacharyya similarity of the colours in a square
    ``window`` (px) around it with ``reference``.

    search: ``[B, 3, H, W]`` in [0, 1]; reference: ``[B, bins²]`` (or ``[1, bins²]``, broadcast).
    Returns ``[B, len(windows), ceil(H / stride), ceil(W / stride)]`` in [0, 1].
    """
    # Votes at half resolution (a 2x2 average keeps colours) make the one-hot map 4x smaller.
    small = F.avg_pool2d(search.float(), 2, ceil_mode=True)
    votes = chroma_votes(small, bins)
    h0, w0 = -(-search.shape[-2] // stride), -(-search.shape[-1] // stride)
    ref = reference.float().sqrt()[:, :, None, None]
    maps = []
    for window in windows:
        k = max(1, window // 2)
        local = _box_mean(votes, k, max(1, stride // 2))
        local = _normalise(local)[..., :h0, :w0]
        if local.shape[-2:] != (h0, w0):  # odd sizes: pad the last row/column
            local = F.pad(local, (0, w0 - local.shape[-1], 0, h0 - local.shape[-2]), mode="replicate")
        maps.append((local.sqrt() * ref).sum(1))
    return torch.stack(maps, 1)


def _box_mean(x: Tensor, k: int, stride: int) -> Tensor:
    """``avg_pool2d(x, k, stride, padding=k // 2, count_include_pad=False)`` as a pass along rows
    then one along columns: the mean over the valid pixels of a box is separable (its count is
    rows x columns), and two 1-D passes cost ``2k`` per output instead of ``k²``."""
    x = F.avg_pool2d(x, (1, k), stride=(1, stride), padding=(0, k // 2), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), stride=(stride, 1), padding=(k // 2, 0), count_include_pad=False)


class ColourSimilarity(Similarity):
    """:func:`colour_similarity` with the references' :func:`template_histogram`, in windows of 2, 4
    and 8 cells of ``stride`` px: 3 maps in [0, 1]; no parameters.

    :meth:`encode` returns the histogram as ``[B, bins², 1, 1]``.
    """

    def __init__(self, bins: int, stride: int):
        super().__init__()
        if bins < 1:
            raise ValueError(f"ColourSimilarity: bins must be >= 1, got {bins}")
        self.bins, self.stride = int(bins), int(stride)
        self.windows = (2 * self.stride, 4 * self.stride, 8 * self.stride)
        self.channels = len(self.windows)
        self.encodes = True

    def encode(self, templates: Tensor, mask: Tensor | None) -> Tensor:
        return template_histogram(templates, mask, self.bins)[..., None, None]

    def forward(self, search: Tensor, features: Sequence[Tensor], fused: Sequence[Tensor], encoded: Tensor | None,
                level_weights: Tensor) -> Tensor:
        size0 = features[0].shape[-2:]
        reference = encoded.flatten(1)
        colour = colour_similarity(search, reference, self.stride, self.windows, self.bins)
        return F.pad(colour, (0, size0[1] - colour.shape[-1], 0, size0[0] - colour.shape[-2]))

    def extra_repr(self) -> str:
        return f"bins={self.bins}, stride={self.stride}"


@dataclass(frozen=True)
class ColourConfig(PartConfig):
    """``model.similarities.colour``: a ``bins`` x ``bins`` chromaticity histogram."""

    type: str = "colour"
    bins: int = field(default=8, metadata=bounds(1, 32))


@SIMILARITIES.register("colour", ColourConfig)
def build_colour(cfg: ColourConfig, stride: int) -> ColourSimilarity:
    return ColourSimilarity(cfg.bins, stride)
