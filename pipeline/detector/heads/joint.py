"""One head on everything (``model.head.type: joint``): the level-weighted correlation maps, the
search features (optional) and the similarity maps, concatenated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..registry import HEADS
from ..similarity.base import resize
from .base import HeadInputs
from .dense import DetectionHead
from .dense_base import DenseHead, DenseHeadConfig

__all__ = ["JointHead", "JointHeadConfig", "build_joint_head"]


class JointHead(DenseHead):
    """A :class:`DetectionHead` on ``[sum_l w_l * corr_l, search features, similarities]`` at the
    finest level (``search_features=False`` leaves the features out: seed 001's head, which must
    rely on matching).

    Args:
        channels: ``C`` of the neck maps. levels: how many. similarities: further map count.
        stride: of the finest level. head_channels: hidden width. box_prior_px: untrained box
        half-size. search_features, similarity_skip: see above and :class:`DenseHead`.
    """

    def __init__(self, channels: int, similarities: int, stride: int, head_channels: int, box_prior_px: float,
                 search_features: bool, similarity_skip: bool):
        super().__init__(stride, similarity_skip)
        self.search_features = search_features
        in_channels = (2 * channels if search_features else channels) + similarities
        self.dense = DetectionHead(in_channels, head_channels, 2, box_prior=box_prior_px / self.stride)

    def forward(self, inputs: HeadInputs) -> dict[str, Any]:
        size0 = inputs.features[0].shape[-2:]
        fused, cosines = None, []
        for w, c in zip(inputs.level_weights, inputs.correlations):
            if self.similarity_gain is not None:
                cosines.append(resize(c.float().mean(1, keepdim=True), size0))
            c = resize(c, size0) * w.to(c.dtype)
            fused = c if fused is None else fused + c
        parts = [fused, inputs.features[0]] if self.search_features else [fused]
        logits, raw = self.dense(torch.cat(parts + list(inputs.similarities), dim=1))
        return self.outputs(logits, raw, cosines, inputs)


@dataclass(frozen=True)
class JointHeadConfig(DenseHeadConfig):
    """``model.head`` of ``type: joint``."""

    type: str = "joint"
    search_features: bool = True


@HEADS.register("joint", JointHeadConfig)
def build_joint_head(cfg: JointHeadConfig, channels: int, levels: int, similarities: int, stride: int) -> nn.Module:
    return JointHead(channels, similarities, stride, cfg.channels, cfg.box_prior, cfg.search_features,
                     cfg.similarity_skip)
