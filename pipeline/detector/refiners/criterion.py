"""Loss of a second stage: the first stage's terms plus the verifier's, on the head's candidates
and on boxes sampled around the truth."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import box_iou_pairwise, iou_loss
from ..targets import target_present

__all__ = ["RefineCriterion", "jitter_boxes", "centre_cell_logits"]

Verify = Callable[[Tensor, Tensor, Tensor | None, Tensor, Tensor], tuple[Tensor, Tensor]]


def jitter_boxes(boxes: Tensor, count: int, shift: float = 0.2, scale: float = 0.3) -> Tensor:
    """``count`` random boxes around each of ``boxes [B, 4]`` xyxy: centre moved by up to
    ``shift`` box sizes, each side length times ``exp(U(-scale, scale))`` -> ``[B, count, 4]``.
    With the defaults most overlap their box at IoU >= 0.5, about as far off as the head's own
    boxes on the target: the verifier learns who the object is, not where IoU crosses 0.5."""
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0)[:, None]
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None]
    u = torch.rand(boxes.shape[0], count, 4, device=boxes.device) * 2 - 1
    centre = centre + u[..., :2] * shift * wh
    wh = wh * torch.exp(u[..., 2:] * scale)
    return torch.cat([centre - wh / 2, centre + wh / 2], dim=-1)


def centre_cell_logits(logits: Tensor, boxes: Tensor, stride: int) -> Tensor:
    """First-stage logit of ``boxes [B, k, 4]``: the ``logits [B, H, W]`` cell holding each box
    centre (clamped to the map) -> ``[B, k]``."""
    b, h, w = logits.shape
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    col = torch.floor(centre[..., 0] / stride).long().clamp(0, w - 1)
    row = torch.floor(centre[..., 1] / stride).long().clamp(0, h - 1)
    return logits.float().flatten(1).gather(1, row * w + col)


class RefineCriterion(nn.Module):
    """``forward(outputs, targets) -> terms``: ``first_stage(outputs["first_stage"], targets)``
    plus

    * ``verify``: binary cross-entropy of the verifier's logit on the head's candidates and on
      ``samples`` boxes jittered around the truth (around the best candidate where the frame has
      no target); label 1 at IoU >= ``positive_iou`` with the truth, 0 below ``negative_iou``
      (a frame without the target: always 0), boxes between are ignored. Shifted pairs are
      negatives like any frame without the target. BCE, not focal: the logit is the final score
      and should read as a probability.
    * ``rank.verify``: which of the head's candidates is the target: cross-entropy of the softmax
      over a frame's candidate logits against its best-overlapping positive candidate, averaged
      over the frames that have one. This is the top-1 choice among look-alikes, which the BCE
      over mostly easy boxes teaches only weakly (weighted as ``verify``).
    * ``refine.l1`` / ``refine.iou``: the refined box against the truth on the positives (L1 of
      coordinates divided by the image size, summed over the 4; ``iou_type`` loss), averaged.

    While :attr:`active` is False (the first stage training alone) the verifier's terms are 0.
    fp32, autocast off for the losses; the verifier itself runs in whatever precision is active.
    """

    def __init__(self, first_stage: nn.Module, verify: Verify, stride: int, iou_type: str, samples: int,
                 positive_iou: float, negative_iou: float):
        super().__init__()
        self.first_stage = first_stage
        self._verify = verify  # a bound method: the verifier stays the model's, not a submodule here
        self.stride, self.iou_type, self.samples = int(stride), iou_type, int(samples)
        self.positive_iou, self.negative_iou = float(positive_iou), float(negative_iou)
        self.active = True

    def forward(self, outputs: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        terms = dict(self.first_stage(outputs["first_stage"], targets))
        logits = outputs["logits"][:, 0].float()  # [B, k]
        zero = logits.sum() * 0.0
        if not self.active:
            return {**terms, "verify": zero, "rank.verify": zero, "refine.l1": zero, "refine.iou": zero}
        gt = targets["boxes"].to(device=logits.device, dtype=torch.float32)
        present = targets.get("present")
        valid = target_present(gt, None if present is None else present.to(logits.device))
        boxes, refined = outputs["candidates"].float(), outputs["boxes"].float()
        k = boxes.shape[1]
        if self.samples > 0:
            features, templates, maps, first_logits = outputs["roi_inputs"]
            around = torch.where(valid[:, None], gt, boxes[:, 0])
            sampled = jitter_boxes(around.detach(), self.samples)
            prior = centre_cell_logits(first_logits.detach(), sampled, self.stride)
            s_logits, s_refined = self._verify(features, templates, maps, sampled, prior)
            logits = torch.cat([logits, s_logits.float()], dim=1)
            boxes = torch.cat([boxes, sampled], dim=1)
            refined = torch.cat([refined, s_refined.float()], dim=1)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return {**terms, **self._verifier_terms(logits, boxes, refined, gt, valid, outputs["image_size"], k)}

    def _verifier_terms(self, logits: Tensor, boxes: Tensor, refined: Tensor, gt: Tensor, valid: Tensor,
                        image_size: tuple[int, int], candidates: int) -> dict[str, Tensor]:
        b, k = logits.shape
        gt_safe = torch.where(valid[:, None], gt, torch.zeros_like(gt))[:, None].expand(b, k, 4)
        iou = box_iou_pairwise(boxes.reshape(-1, 4), gt_safe.reshape(-1, 4)).reshape(b, k)
        iou = torch.where(valid[:, None], iou, torch.zeros_like(iou))
        positive = iou >= self.positive_iou
        labelled = positive | (iou < self.negative_iou)
        bce = F.binary_cross_entropy_with_logits(logits, positive.float(), reduction="none")
        verify = (bce * labelled).sum() / labelled.sum().clamp(min=1)
        cand_iou = iou[:, :candidates]
        has_target = (cand_iou >= self.positive_iou).any(dim=1)
        if has_target.any():
            rank = F.cross_entropy(logits[has_target, :candidates], cand_iou[has_target].argmax(dim=1))
        else:
            rank = logits.sum() * 0.0
        n = positive.sum().clamp(min=1)
        pred, true = refined[positive], gt_safe[positive]
        h, w = image_size
        scale = pred.new_tensor([w, h, w, h])
        l1 = ((pred - true).abs() / scale).sum() / n + refined.sum() * 0.0
        box = iou_loss(pred, true, self.iou_type, reduction="sum") / n + refined.sum() * 0.0
        return {"verify": verify, "rank.verify": rank, "refine.l1": l1, "refine.iou": box}

    def extra_repr(self) -> str:
        return (f"samples={self.samples}, positive_iou={self.positive_iou}, negative_iou={self.negative_iou}, "
                f"iou_type={self.iou_type!r}, active={self.active}")
