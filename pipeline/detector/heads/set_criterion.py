"""Set-prediction loss of the query head: Hungarian matching, then focal loss on every query and
box losses on the matched ones, for the last decoder layer and (``aux``) each earlier one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from pipeline.config import IouType

from ..losses import IOU_TYPES, iou_loss
from ..targets import build_targets, target_present
from .matcher import hungarian_match

__all__ = ["SetCriterion"]


class SetCriterion(nn.Module):
    """Losses of :class:`~.query.QueryHead` outputs.

    Args:
        iou_type: box loss, one of ``iou``, ``giou``, ``diou``, ``ciou``.
        focal_alpha, focal_gamma: of :func:`torchvision.ops.sigmoid_focal_loss` and the matching cost.
        class_cost, l1_cost, giou_cost: weights of the matching cost (:mod:`.matcher`).

    ``forward(outputs, targets) -> {"focal", "l1", "iou", "aux0.focal", "aux0.l1", ...}`` of
    unweighted fp32 scalars (``aux{i}`` for the ``i``-th earlier decoder layer, weighted like the
    last one by :func:`~pipeline.detector.losses.weighted_total`):

    * ``outputs``: ``logits [B, 1, N]``, ``boxes [B, N, 4]`` xyxy px, ``image_size (H, W)`` and
      optional ``aux``, a list of ``{"logits", "boxes"}`` of the same shapes.
    * ``targets``: ``{"boxes": [B, 4] xyxy px (NaN row = no target), "present": [B] bool
      (optional)}``: at most one object per image; without one every query is background.

    ``proposal.focal`` (weighted as ``focal``): the query selection's dense score, a focal loss
    over the finest cells with the cells within ``pos_radius`` of the target's centre positive,
    / max(1, positives), when the outputs have ``proposal_logits [B, H0, W0]``.
    ``focal``: summed over all queries / max(1, matched queries); ``l1`` (coordinates divided by
    the image width / height, summed over the 4) and ``iou`` summed over matched queries / the
    same count. Without any target in the batch ``l1`` and ``iou`` are 0, still attached to the
    graph. Computed in fp32 with autocast disabled.
    """

    def __init__(self, iou_type: IouType = "giou", focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                 class_cost: float = 2.0, l1_cost: float = 5.0, giou_cost: float = 2.0, pos_radius: int = 1):
        super().__init__()
        if iou_type not in IOU_TYPES:
            raise ValueError(f"SetCriterion: iou_type {iou_type!r} is not one of {', '.join(IOU_TYPES)}")
        self.iou_type = iou_type
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.costs = (float(class_cost), float(l1_cost), float(giou_cost))
        self.pos_radius = int(pos_radius)

    def forward(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        logits: Tensor = outputs["logits"]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            gt = targets["boxes"].to(device=logits.device, dtype=torch.float32)
            present = targets.get("present")
            valid = target_present(gt, None if present is None else present.to(logits.device))
            # one list per image for the matcher: the row itself, or nothing
            gt_sets = [g[None] if v else g.new_zeros(0, 4) for g, v in zip(gt, valid.tolist())]
            image_size = tuple(outputs["image_size"])
            terms = self._layer(outputs["logits"], outputs["boxes"], gt_sets, image_size)
            for i, aux in enumerate(outputs.get("aux", ())):
                terms.update({f"aux{i}.{k}": v for k, v in
                              self._layer(aux["logits"], aux["boxes"], gt_sets, image_size).items()})
            if "proposal_logits" in outputs:
                proposals = outputs["proposal_logits"].float()
                targets_map, pos = build_targets(gt, tuple(proposals.shape[-2:]), int(outputs["stride"]),
                                                 self.pos_radius, valid)
                terms["proposal.focal"] = sigmoid_focal_loss(
                    proposals, targets_map, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum",
                ) / pos.sum().clamp(min=1)
            return terms

    def _layer(self, logits: Tensor, boxes: Tensor, gt_sets: list[Tensor], image_size: tuple[int, int]
               ) -> dict[str, Tensor]:
        logits = logits.float()[:, 0]  # [B, N]
        boxes = boxes.float()
        class_cost, l1_cost, giou_cost = self.costs
        matches = hungarian_match(logits.detach(), boxes.detach(), gt_sets, image_size, class_cost, l1_cost,
                                  giou_cost, self.focal_alpha, self.focal_gamma)
        image_idx = torch.cat([torch.full_like(q, b) for b, (q, _) in enumerate(matches)]).to(logits.device)
        query_idx = torch.cat([q for q, _ in matches]).to(logits.device)
        matched_gt = torch.cat([g[j.to(g.device)] for g, (_, j) in zip(gt_sets, matches)])
        labels = torch.zeros_like(logits)
        labels[image_idx, query_idx] = 1.0
        norm = max(1, int(query_idx.numel()))
        focal = sigmoid_focal_loss(logits, labels, alpha=self.focal_alpha, gamma=self.focal_gamma,
                                   reduction="sum") / norm
        pred = boxes[image_idx, query_idx]  # [M, 4]; empty (but in the graph) without targets
        h, w = image_size
        scale = pred.new_tensor([w, h, w, h])
        l1 = ((pred - matched_gt) / scale).abs().sum() / norm
        iou = iou_loss(pred, matched_gt, self.iou_type, reduction="sum") / norm
        return {"focal": focal, "l1": l1, "iou": iou}

    def extra_repr(self) -> str:
        return (f"iou_type={self.iou_type!r}, focal_alpha={self.focal_alpha}, focal_gamma={self.focal_gamma}, "
                f"costs(class, l1, giou)={self.costs}")
