"""Depth-wise cross-correlation of search features with a template kernel, SiamRPN++ style
(``model.correlation.type: depthwise``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import PartConfig, bounds

from ..registry import CORRELATIONS
from ..tracing import exporting

__all__ = ["depthwise_xcorr", "shifted_xcorr", "Correlation", "CorrelationConfig", "build_depthwise_correlation"]


def depthwise_xcorr(search: Tensor, kernel: Tensor) -> Tensor:
    """Per-sample, per-channel cross-correlation with "same" output size.

    Args:
        search: ``[B, C, H, W]``.
        kernel: ``[B, C, kh, kw]``, one kernel per sample and channel (any size, odd or even).

    Returns:
        ``[B, C, H, W]`` with ``out[b, c, i, j] = sum_{u, v} search_p[b, c, i + u, j + v] *
        kernel[b, c, u, v]`` where ``search_p`` is ``search`` zero-padded by ``(k - 1) // 2`` on the
        top/left and ``k // 2`` on the bottom/right (the kernel is not flipped, as in ``conv2d``).
        Implemented as one grouped convolution with ``groups = B * C``.
    """
    if search.dim() != 4 or kernel.dim() != 4 or search.shape[:2] != kernel.shape[:2]:
        raise ValueError(
            f"depthwise_xcorr: expected search [B, C, H, W] and kernel [B, C, k, k] with equal B, C; "
            f"got {tuple(search.shape)} and {tuple(kernel.shape)}"
        )
    b, c, h, w = search.shape
    kh, kw = kernel.shape[-2:]
    x = search.reshape(1, b * c, h, w)
    x = F.pad(x, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
    out = F.conv2d(x, kernel.reshape(b * c, 1, kh, kw).to(x.dtype), groups=b * c)
    return out.reshape(b, c, h, w)


def shifted_xcorr(search: Tensor, kernel: Tensor) -> Tensor:
    """:func:`depthwise_xcorr` (same padding, same numbers up to float rounding) as a sum of
    ``kh * kw`` shifted products, so no shape depends on the batch (the export-safe form).

    ``search [B, C, H, W]``, ``kernel [B, C, kh, kw]`` -> ``[B, C, H, W]``.
    """
    kh, kw = kernel.shape[-2:]
    kernel = kernel.to(search.dtype)
    if kh == 1 and kw == 1:
        return search * kernel
    h, w = search.shape[-2:]
    x = F.pad(search, ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
    out = x[..., :h, :w] * kernel[..., :1, :1]
    for u in range(kh):
        for v in range(kw):
            if u or v:
                out = out + x[..., u : u + h, v : v + w] * kernel[..., u : u + 1, v : v + 1]
    return out


class Correlation(nn.Module):
    """Correlate search features with a template pooled to a ``kernel_size`` square kernel.

    Args:
        kernel_size: side ``k`` of the kernel; the template map is adaptive-average-pooled to it.
        normalize: if True, the channel vector at every position of both the search map and the
            kernel is L2-normalised and the result scaled by ``C / k**2``, so that the channel mean
            of the output is the mean cosine similarity over the kernel positions (in ``[-1, 1]``)
            and values stay O(1) whatever ``C`` and ``k``. If False the raw correlation is divided
            by ``k**2`` (a mean over kernel positions).

    ``forward(search: [B, C, H, W], template: [B, C, h, w]) -> [B, C, H, W]``.
    """

    def __init__(self, kernel_size: int, normalize: bool):
        super().__init__()
        if kernel_size < 1:
            raise ValueError(f"Correlation: kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = int(kernel_size)
        self.normalize = bool(normalize)

    def kernel(self, template: Tensor) -> Tensor:
        """The pooled (and optionally normalised) kernel ``[B, C, k, k]``."""
        k = F.adaptive_avg_pool2d(template, self.kernel_size)
        return F.normalize(k, dim=1) if self.normalize else k

    def forward(self, search: Tensor, template: Tensor) -> Tensor:
        k = self.kernel(template)
        if self.normalize:
            search = F.normalize(search, dim=1)
            scale = search.shape[1] / self.kernel_size**2
        else:
            scale = 1.0 / self.kernel_size**2
        # The grouped conv bakes the batch into ONNX's fixed ``group`` attribute; the shifted sum
        # is the same correlation with no shape tied to the batch.
        xcorr = shifted_xcorr if exporting() else depthwise_xcorr
        return xcorr(search, k) * scale

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, normalize={self.normalize}"


@dataclass(frozen=True)
class CorrelationConfig(PartConfig):
    """``model.correlation`` of ``type: depthwise``."""

    type: str = "depthwise"
    kernel: int = field(default=1, metadata=bounds(1))
    normalize: bool = True


@CORRELATIONS.register("depthwise", CorrelationConfig)
def build_depthwise_correlation(cfg: CorrelationConfig) -> Correlation:
    return Correlation(cfg.kernel, cfg.normalize)
