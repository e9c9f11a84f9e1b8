"""Assignment of the ground-truth box to cells of the detection map."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["build_targets", "target_present"]


def target_present(boxes: Tensor, present: Tensor | None = None) -> Tensor:
    """``[B]`` bool: the frame contains the target (box row has no NaN, and ``present`` if given)."""
    ok = ~torch.isnan(boxes).any(dim=-1)
    return ok if present is None else ok & present.bool()


def build_targets(
    boxes: Tensor,
    feature_size: tuple[int, int],
    stride: int,
    pos_radius: int = 1,
    present: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Objectness targets for one box per frame.

    Args:
        boxes: ``[B, 4]`` ``(x1, y1, x2, y2)`` in input pixels; a row with a NaN means "no target".
        feature_size: ``(H, W)`` of the detection map.
        stride: pixels per cell.
        pos_radius: positives are the cells within this Chebyshev distance (in cells) of the cell
            containing the box centre, i.e. a ``(2r + 1) x (2r + 1)`` square, cut to the map.
        present: optional ``[B]`` bool; False marks a frame without the target.

    Returns:
        ``obj_target [B, H, W]`` float (1 at positives, else 0) and ``pos_mask [B, H, W]`` bool.
        The centre cell is ``(floor(cy / stride), floor(cx / stride))``, clamped to the map (a box
        whose centre is outside the image is assigned to the nearest border cell). Frames without
        target have only negatives.
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"build_targets: expected boxes [B, 4], got {tuple(boxes.shape)}")
    h, w = int(feature_size[0]), int(feature_size[1])
    valid = target_present(boxes, present)
    safe = torch.where(valid[:, None], boxes.float(), torch.zeros_like(boxes, dtype=torch.float32))
    cx = (safe[:, 0] + safe[:, 2]) / 2
    cy = (safe[:, 1] + safe[:, 3]) / 2
    ci = torch.floor(cy / stride).long().clamp(0, h - 1)
    cj = torch.floor(cx / stride).long().clamp(0, w - 1)
    ii = torch.arange(h, device=boxes.device)
    jj = torch.arange(w, device=boxes.device)
    near_i = (ii[None, :] - ci[:, None]).abs() <= pos_radius  # [B, H]
    near_j = (jj[None, :] - cj[:, None]).abs() <= pos_radius  # [B, W]
    pos = near_i[:, :, None] & near_j[:, None, :] & valid[:, None, None]
    return pos.float(), pos
