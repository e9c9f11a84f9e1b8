"""What the dense (one box per cell) heads share: output layout, similarity skip, loss, decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.config import PartConfig, bounds

from ..losses import DetectionCriterion
from ..postprocess import postprocess
from .base import Head, HeadInputs
from .dense import decode_boxes, ltrb_from_raw

__all__ = ["DenseHeadConfig", "DenseHead"]


@dataclass(frozen=True)
class DenseHeadConfig(PartConfig):
    """Keys every dense head has."""

    type: str = "factorized"
    channels: int = field(default=64, metadata=bounds(8))
    box_prior: float = field(default=16.0, metadata=bounds(1.0))  # untrained box half-size, px
    similarity_skip: bool = False


class DenseHead(Head):
    """Base of heads that score every cell of the finest level (stride ``stride``) and regress
    its box as side distances (:mod:`.dense`).

    With ``similarity_skip``, ``gain * cosine similarity`` (per cell, levels weighted, minus its
    mean over the image) is added to the objectness logit, as SiamFC scores a response map, so
    the loss shapes the features for matching from the first step.
    """

    def __init__(self, stride: int, similarity_skip: bool):
        super().__init__()
        self.stride = int(stride)
        self.similarity_gain = nn.Parameter(torch.tensor(5.0)) if similarity_skip else None

    def outputs(self, logits: Tensor, raw: Tensor, cosines: Sequence[Tensor], inputs: HeadInputs) -> dict[str, Any]:
        """The output dict from padded ``logits [B, 1, ., .]`` and ``raw`` box ``[B, 4, ., .]``;
        ``cosines``: per level ``[B, 1, H0', W0']`` fp32 channel means of the correlations."""
        h, w = inputs.image_size
        h0, w0 = -(-h // self.stride), -(-w // self.stride)
        logits = logits[:, 0, :h0, :w0]
        if self.similarity_gain is not None:
            similarity = sum(w * cos[:, 0] for w, cos in zip(inputs.level_weights.float(), cosines))
            similarity = similarity - similarity.mean(dim=(1, 2), keepdim=True)
            logits = logits + self.similarity_gain * similarity[:, :h0, :w0].to(logits.dtype)
        ltrb = ltrb_from_raw(raw[:, :, :h0, :w0], self.stride)
        return {"logits": logits, "ltrb": ltrb, "boxes": decode_boxes(ltrb, self.stride), "stride": self.stride,
                "image_size": (h, w)}

    def criterion(self, iou_type: str, focal_alpha: float, focal_gamma: float, pos_radius: int) -> DetectionCriterion:
        return DetectionCriterion(iou_type, focal_alpha, focal_gamma, pos_radius)

    def decode(self, outputs: dict[str, Any], score_threshold: float, nms_iou: float,
               max_detections: int) -> list[tuple[Tensor, Tensor]]:
        return postprocess(outputs["logits"], outputs["boxes"], score_threshold, nms_iou, max_detections)
