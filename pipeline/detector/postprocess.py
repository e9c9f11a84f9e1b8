"""Turn detector outputs into a few scored boxes per frame: NMS for dense heads, the best
scores alone for set-prediction heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import nms


def postprocess(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    score_threshold: float,
    nms_iou: float,
    max_detections: int,
    pre_nms_top_k: int = 100,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per frame: sigmoid scores, top-k, threshold, NMS.

    logits: [B, H, W] objectness logits; boxes: [B, H*W, 4] xyxy in input pixels.
    Returns per frame ``(boxes [N, 4], scores [N])`` sorted by score, N <= max_detections.
    """
    scores = logits.flatten(1).float().sigmoid()
    out = []
    for s, b in zip(scores, boxes.float()):
        k = min(pre_nms_top_k, s.numel())
        top, idx = s.topk(k)
        keep = top >= score_threshold
        top, cand = top[keep], b[idx[keep]]
        kept = nms(cand, top, nms_iou)[:max_detections]
        out.append((cand[kept], top[kept]))
    return out


def top_detections(
    logits: torch.Tensor, boxes: torch.Tensor, score_threshold: float, max_detections: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per frame: sigmoid scores, the best ``max_detections`` at or above the threshold, no NMS.

    logits: [B, ...] scores of the ``N`` boxes in any layout (e.g. ``[B, 1, N]``); boxes: [B, N, 4].
    Returns per frame ``(boxes [N', 4], scores [N'])`` sorted by score, N' <= max_detections.
    """
    scores = logits.flatten(1).float().sigmoid()
    out = []
    for s, b in zip(scores, boxes.float()):
        top, idx = s.topk(min(max_detections, s.numel()))
        keep = top >= score_threshold
        out.append((b[idx[keep]], top[keep]))
    return out


def candidate_peaks(logits: Tensor, window: int = 3) -> Tensor:
    """``logits [B, H, W]`` with every cell that is not the maximum of its ``window`` x ``window``
    neighbourhood lowered by 1e4, so a top-k picks distinct local peaks (CenterNet's NMS-free
    peak picking; plain arithmetic, so it exports as it runs). fp32."""
    logits = logits.float()
    pooled = F.max_pool2d(logits[:, None], window, stride=1, padding=window // 2)[:, 0]
    return torch.where(logits >= pooled, logits, logits - 1e4)
