"""Detection losses: IoU-family box losses and the criterion returning named, unweighted terms."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn
from torchvision.ops import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)

from pipeline.config import IouType

from .targets import build_targets, target_present

__all__ = ["IOU_TYPES", "box_iou_pairwise", "iou_loss", "DetectionCriterion", "weighted_total"]

IOU_TYPES: tuple[str, ...] = get_args(IouType)
_EPS = 1e-7


def box_iou_pairwise(a: Tensor, b: Tensor, eps: float = _EPS) -> Tensor:
    """Element-wise IoU of ``[N, 4]`` ``xyxy`` boxes ``a[i]`` and ``b[i]`` -> ``[N]``
    (unlike :func:`torchvision.ops.box_iou`, which is all-pairs)."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area_a + area_b - inter + eps)


def iou_loss(
    pred: Tensor,
    target: Tensor,
    iou_type: IouType = "giou",
    reduction: Literal["none", "mean", "sum"] = "none",
) -> Tensor:
    """IoU-family loss of ``[N, 4]`` ``xyxy`` boxes, element-wise (``pred[i]`` vs ``target[i]``).

    ``"iou"``: ``1 - IoU``; ``"giou"`` / ``"diou"`` / ``"ciou"``: torchvision's
    ``generalized_box_iou_loss`` / ``distance_box_iou_loss`` / ``complete_box_iou_loss``.
    Returns ``[N]`` for ``reduction="none"`` (``mean`` of an empty input is 0, not NaN).
    """
    if iou_type == "iou":
        loss = 1.0 - box_iou_pairwise(pred, target)
    elif iou_type == "giou":
        loss = generalized_box_iou_loss(pred, target, reduction="none", eps=_EPS)
    elif iou_type == "diou":
        loss = distance_box_iou_loss(pred, target, reduction="none", eps=_EPS)
    elif iou_type == "ciou":
        loss = complete_box_iou_loss(pred, target, reduction="none", eps=_EPS)
    else:
        raise ValueError(f"iou_loss: iou_type {iou_type!r} is not one of {', '.join(IOU_TYPES)}")
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / max(1, loss.numel())
    return loss


class DetectionCriterion(nn.Module):
    """Losses of :class:`~pipeline.detector.model.ReferenceDetector` outputs.

    Args:
        iou_type: box loss, one of ``iou``, ``giou``, ``diou``, ``ciou``.
        focal_alpha, focal_gamma: of :func:`torchvision.ops.sigmoid_focal_loss`.
        pos_radius: see :func:`~pipeline.detector.targets.build_targets`.

    ``forward(outputs, targets) -> {"focal", "l1", "iou"}`` of unweighted fp32 scalars (combine
    them with :func:`weighted_total`):

    * ``outputs``: the dict of ``ReferenceDetector.detect`` (``logits [B, H, W]``,
      ``boxes [B, H*W, 4]`` xyxy px, ``stride``, optional ``image_size (H_img, W_img)``).
    * ``targets``: ``{"boxes": [B, 4] xyxy px (NaN row = no target), "present": [B] bool
      (optional)}``.

    ``focal``: summed focal loss over all cells / max(1, number of positive cells).
    ``l1``: L1 distance of predicted and true box at positive cells, coordinates divided by the
    image width/height, summed over the 4 coordinates, averaged over positive cells.
    ``iou``: ``iou_loss`` at positive cells, averaged over them.
    With no positive cell in the batch, ``l1`` and ``iou`` are 0 (still attached to the graph).
    Computed in fp32 with autocast disabled.
    """

    def __init__(
        self,
        iou_type: IouType = "giou",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        pos_radius: int = 1,
    ):
        super().__init__()
        if iou_type not in IOU_TYPES:
            raise ValueError(f"DetectionCriterion: iou_type {iou_type!r} is not one of {', '.join(IOU_TYPES)}")
        self.iou_type = iou_type
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.pos_radius = int(pos_radius)

    def forward(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        logits: Tensor = outputs["logits"]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self._losses(outputs, targets)

    def _losses(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        logits = outputs["logits"].float()  # [B, H, W]
        boxes = outputs["boxes"].float()  # [B, HW, 4]
        stride = int(outputs["stride"])
        b, h, w = logits.shape
        img_h, img_w = outputs.get("image_size", (h * stride, w * stride))
        gt = targets["boxes"].to(device=logits.device, dtype=torch.float32)
        present = targets.get("present")
        if present is not None:
            present = present.to(logits.device)
        obj_t, pos = build_targets(gt, (h, w), stride, self.pos_radius, present)

        num_pos = pos.sum()
        norm = num_pos.clamp(min=1).float()
        focal = sigmoid_focal_loss(
            logits, obj_t, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
        ) / norm

        valid = target_present(gt, present)
        gt_safe = torch.where(valid[:, None], gt, torch.zeros_like(gt))
        pos_flat = pos.reshape(b, h * w)
        pred_pos = boxes[pos_flat]  # [N, 4]
        gt_pos = gt_safe[:, None, :].expand(b, h * w, 4)[pos_flat]  # [N, 4]
        scale = pred_pos.new_tensor([img_w, img_h, img_w, img_h])
        l1 = ((pred_pos - gt_pos).abs() / scale).sum() / norm
        iou = iou_loss(pred_pos, gt_pos, self.iou_type, reduction="sum") / norm
        return {"focal": focal, "l1": l1, "iou": iou}

    def extra_repr(self) -> str:
        return (
            f"iou_type={self.iou_type!r}, focal_alpha={self.focal_alpha}, "
            f"focal_gamma={self.focal_gamma}, pos_radius={self.pos_radius}"
        )


def weighted_total(terms: Mapping[str, Tensor], weights: Any) -> Tensor:
    """``sum(weights[kind(name)] * terms[name])``, where ``kind`` is the part of a term's name after
    its last ``.`` (``"aux0.focal"`` and ``"refine.iou"`` are weighted as ``focal`` and ``iou``).

    ``weights`` is a mapping or a dataclass such as ``pipeline.config.LossWeights``; every term
    needs a weight (a missing one is a ``KeyError`` naming the term and the weights); weights of
    terms a head does not have are not used.
    """
    if dataclasses.is_dataclass(weights) and not isinstance(weights, type):
        weights = dataclasses.asdict(weights)
    weights = dict(weights)
    total = None
    for name, value in terms.items():
        kind = name.rsplit(".", 1)[-1]
        if kind not in weights:
            raise KeyError(f"weighted_total: loss term {name!r} has no weight (weights: {sorted(weights)})")
        part = value * float(weights[kind])
        total = part if total is None else total + part
    if total is None:
        raise ValueError("weighted_total: no loss terms")
    return total
