"""Objectness times match (``model.head.type: factorized``): a class-agnostic objectness and box
head on the search features alone, and a :class:`MatchHead` logit from the similarity maps alone
(see :mod:`.match_head` for why this carries over to unseen objects)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ..registry import HEADS
from ..similarity.base import resize
from .base import HeadInputs
from .dense import DetectionHead
from .dense_base import DenseHead, DenseHeadConfig
from .match_head import MatchHead, and_logits

__all__ = ["FactorizedHead", "FactorizedHeadConfig", "build_factorized_head"]


class FactorizedHead(DenseHead):
    """Objectness + box from the finest search features; match logit from the cosine similarity of
    every level (the correlations' channel means) and the similarity maps.

    Args:
        channels: ``C`` of the neck maps. levels: how many. similarities: further map count.
        stride: of the finest level. head_channels: hidden width. box_prior_px: untrained box
        half-size. gate: ``"sum"`` of the two logits (odds multiply) or ``"and"``
        (probabilities multiply, :func:`.match_head.and_logits`). similarity_skip: see
        :class:`DenseHead`.
    """

    def __init__(self, channels: int, levels: int, similarities: int, stride: int, head_channels: int,
                 box_prior_px: float, gate: Literal["sum", "and"], similarity_skip: bool):
        super().__init__(stride, similarity_skip)
        if gate not in ("sum", "and"):
            raise ValueError(f"FactorizedHead: gate must be 'sum' or 'and', got {gate!r}")
        self.gate = gate
        self.dense = DetectionHead(channels, head_channels, 2, box_prior=box_prior_px / self.stride)
        self.match = MatchHead(levels + similarities, max(8, head_channels // 2))

    def forward(self, inputs: HeadInputs) -> dict[str, Any]:
        features = inputs.features[0]
        size0 = features.shape[-2:]
        # Only the channel means are read; bilinear resizing is linear, so the mean is taken first
        # and one channel resized instead of C.
        cosines = [resize(c.float().mean(1, keepdim=True), size0) for c in inputs.correlations]
        logits, raw = self.dense(features)
        match = self.match(torch.cat([c.to(features.dtype) for c in cosines] + list(inputs.similarities), dim=1))
        logits = and_logits(logits, match) if self.gate == "and" else logits + match
        return self.outputs(logits, raw, cosines, inputs)


@dataclass(frozen=True)
class FactorizedHeadConfig(DenseHeadConfig):
    """``model.head`` of ``type: factorized``."""

    type: str = "factorized"
    gate: Literal["sum", "and"] = "and"


@HEADS.register("factorized", FactorizedHeadConfig)
def build_factorized_head(cfg: FactorizedHeadConfig, channels: int, levels: int, similarities: int,
                          stride: int) -> nn.Module:
    return FactorizedHead(channels, levels, similarities, stride, cfg.channels, cfg.box_prior, cfg.gate,
                          cfg.similarity_skip)
