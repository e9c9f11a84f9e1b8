"""Match head: "is this the reference's object?" from similarity maps alone.

A factorised detector scores a cell as ``objectness(search features) + match(similarities)``
(logits add, so the odds multiply). The objectness/box head never sees the references, so it can
only learn what every object has in common (class-agnostic, like a region-proposal network); the
match head sees only how well each place matches the references (cosine similarities, prototype
matches, colour similarity), never the raw features of either, so it cannot memorise the few
identities of the training set. Both facts are what make the detector carry over to objects it
never saw: trained on a few dozen identities, a head that sees raw features learns *those*
identities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MatchHead", "and_logits"]


class MatchHead(nn.Module):
    """``num_convs`` x (3x3 conv -> GELU), then a 3x3 conv to one logit per cell.

    Args:
        in_channels: number of similarity maps.
        channels: hidden channels.
        num_convs: hidden conv blocks (each widens the spatial context by 2 cells).

    ``forward(x: [B, in_channels, H, W]) -> [B, 1, H, W]`` match logits, 0 at initialisation (the
    objectness head's 1 % prior is then the whole score).
    """

    def __init__(self, in_channels: int, channels: int = 32, num_convs: int = 3):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"MatchHead: need at least one similarity map, got in_channels={in_channels}")
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_convs):
            layers += [nn.Conv2d(c, channels, 3, padding=1), nn.GELU()]
            c = channels
        self.tower = nn.Sequential(*layers)
        self.out = nn.Conv2d(c, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.tower(x))


def and_logits(objectness: Tensor, match: Tensor) -> Tensor:
    """Logit of ``sigmoid(objectness) * sigmoid(match)``: "an object here AND the reference's".

    Unlike the sum of logits, a very salient object (large ``objectness``) cannot outvote a low
    match: the probability is at most ``sigmoid(match)``. Same shapes in and out; computed in fp32
    through log-sigmoids, so it is stable for any logits.
    """
    log_p = (F.logsigmoid(objectness.float()) + F.logsigmoid(match.float())).clamp(max=-1e-7)
    # log(1 - p) = log(-expm1(log p)), accurate near p = 1; log1p(-exp(log p)) near p = 0
    log_q = torch.where(log_p > -0.6931, torch.log(-torch.expm1(log_p)), torch.log1p(-torch.exp(log_p)))
    return log_p - log_q
