"""Hungarian matching of set predictions to ground-truth boxes (DETR, Carion et al. 2020).

Each ground-truth box gets exactly one query, the one-to-one assignment of least total cost;
the other queries are trained as background. The class cost is Deformable DETR's focal form.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import generalized_box_iou

__all__ = ["matching_cost", "hungarian_match"]

_EPS = 1e-8


def matching_cost(
    logits: Tensor,
    boxes: Tensor,
    gt_boxes: Tensor,
    image_size: tuple[int, int],
    class_weight: float = 2.0,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> Tensor:
    """Cost of giving each of ``N`` queries each of ``M`` ground-truth boxes of one image.

    Args:
        logits: ``[N]`` object logits. boxes: ``[N, 4]`` xyxy input pixels.
        gt_boxes: ``[M, 4]`` xyxy input pixels. image_size: ``(H, W)``, which normalises the L1 term.
        class_weight, l1_weight, giou_weight: weights of the three costs.
        focal_alpha, focal_gamma: of the focal class cost.

    Returns:
        ``[N, M]`` fp32: ``class_weight * (pos - neg) + l1_weight * L1 / size - giou_weight * GIoU``,
        where ``pos`` / ``neg`` are the focal losses of calling the query an object / background.
    """
    prob = logits.float().sigmoid()
    neg = (1 - focal_alpha) * prob.pow(focal_gamma) * -(1 - prob + _EPS).log()
    pos = focal_alpha * (1 - prob).pow(focal_gamma) * -(prob + _EPS).log()
    h, w = image_size
    scale = boxes.new_tensor([w, h, w, h], dtype=torch.float32)
    pred, gt = boxes.float() / scale, gt_boxes.float() / scale
    l1 = torch.cdist(pred, gt, p=1)
    giou = generalized_box_iou(pred, gt)
    return class_weight * (pos - neg)[:, None] + l1_weight * l1 - giou_weight * giou


@torch.no_grad()
def hungarian_match(
    logits: Tensor,
    boxes: Tensor,
    gt_boxes: Sequence[Tensor],
    image_size: tuple[int, int],
    class_weight: float = 2.0,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> list[tuple[Tensor, Tensor]]:
    """One-to-one assignment of queries to ground-truth boxes of least total :func:`matching_cost`.

    Args:
        logits: ``[B, N]`` object logits. boxes: ``[B, N, 4]`` xyxy input pixels.
        gt_boxes: per image ``[M_b, 4]`` xyxy input pixels, ``M_b <= N`` (``M_b = 0``: no object).
        image_size, weights, focal_alpha, focal_gamma: see :func:`matching_cost`.

    Returns:
        Per image ``(query_idx [M_b], gt_idx [M_b])`` int64 CPU tensors, ordered by query.
    """
    if logits.shape[0] != len(gt_boxes) or boxes.shape[:2] != logits.shape:
        raise ValueError(f"hungarian_match: logits {tuple(logits.shape)}, boxes {tuple(boxes.shape)} and "
                         f"{len(gt_boxes)} ground-truth sets do not fit")
    sizes = [int(g.shape[0]) for g in gt_boxes]
    if sum(sizes) == 0:
        return [(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)) for _ in sizes]
    b, n = logits.shape
    # one cost matrix for all images, moved to the CPU at once (one device sync per batch)
    gt_all = torch.cat([g.to(boxes.device) for g in gt_boxes])
    cost = matching_cost(logits.reshape(b * n), boxes.reshape(b * n, 4), gt_all, image_size, class_weight,
                         l1_weight, giou_weight, focal_alpha, focal_gamma).reshape(b, n, -1).cpu()
    out = []
    for image, block in enumerate(cost.split(sizes, dim=-1)):
        rows, cols = linear_sum_assignment(block[image].numpy())
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return out
