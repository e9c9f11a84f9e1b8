"""Fusion of the features of 1..K reference photos (templates) into one."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["TemplateFusion", "FUSION_MODES"]

FUSION_MODES = ("attention", "average")


class TemplateFusion(nn.Module):
    """Combine K template feature maps into one, ignoring padded (invalid) templates.

    Args:
        channels: ``C`` of the template features.
        mode: ``"average"``: plain mean over the valid templates. ``"attention"``: a weighted mean
            whose weights are a softmax, over the valid templates, of a learned score per template
            (global-average-pooled features -> MLP ``C -> C/4 -> 1``). The last MLP layer starts at
            zero, so an untrained attention fusion equals the average.

    ``forward(features: [B, K, C, h, w], mask: [B, K] bool | None) -> [B, C, h, w]``.
    ``mask[b, k]`` is True for a real template; ``None`` means all K are real. Every sample needs at
    least one real template. Both modes are invariant to the order of the templates.
    """

    def __init__(self, channels: int, mode: Literal["attention", "average"] = "attention"):
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"TemplateFusion: mode {mode!r} is not one of {', '.join(FUSION_MODES)}")
        self.channels = int(channels)
        self.mode = mode
        if mode == "attention":
            hidden = max(1, self.channels // 4)
            self.score = nn.Sequential(nn.Linear(self.channels, hidden), nn.GELU(), nn.Linear(hidden, 1))
            nn.init.zeros_(self.score[-1].weight)
            nn.init.zeros_(self.score[-1].bias)

    def weights(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """Per-template weights ``[B, K]`` (sum 1 over the valid templates, 0 on padded ones)."""
        if features.dim() != 5:
            raise ValueError(f"TemplateFusion: expected features [B, K, C, h, w], got {tuple(features.shape)}")
        b, k = features.shape[:2]
        if mask is None:
            mask = torch.ones(b, k, dtype=torch.bool, device=features.device)
        elif mask.shape != (b, k):
            raise ValueError(f"TemplateFusion: mask shape {tuple(mask.shape)} != (B, K) = {(b, k)}")
        mask = mask.bool()
        if not bool(mask.any(dim=1).all()):
            raise ValueError("TemplateFusion: every sample needs at least one valid template (mask row all False)")
        if self.mode == "average":
            w = mask.float()
            return w / w.sum(dim=1, keepdim=True)
        pooled = features.float().mean(dim=(3, 4))  # [B, K, C]
        scores = self.score(pooled.to(features.dtype)).squeeze(-1).float()  # [B, K]
        scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=1)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        w = self.weights(features, mask).to(features.dtype)
        if mask is not None:  # padded templates may hold anything, NaN included
            features = features.masked_fill(~mask.bool()[:, :, None, None, None], 0)
        return torch.einsum("bk,bkchw->bchw", w, features)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mode={self.mode!r}"
