"""RoI verifier (``model.refine.type: roi``): the head's top-k candidates are pooled from the
search features with RoIAlign, compared with the references' own RoI features, and given a
"this is the target" logit and a refined box; its logit is the detector's final score."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from pipeline.config import PartConfig, bounds

from ..heads.base import HeadInputs
from ..heads.dense import _group_count
from ..postprocess import candidate_peaks, postprocess
from ..registry import REFINERS
from .criterion import RefineCriterion

__all__ = ["RoiVerifier", "RoiRefinerConfig", "pool_boxes", "apply_deltas"]

_DELTA_SCALE = (0.1, 0.1, 0.2, 0.2)  # R-CNN's box-coder weights (10, 10, 5, 5): deltas of order 1
_MAX_LOG_SCALE = math.log(1000.0 / 16)


def pool_boxes(features: Tensor, boxes: Tensor, stride: int, size: int) -> Tensor:
    """RoIAlign of per-image boxes.

    Args:
        features: ``[B, C, H, W]`` map of stride ``stride`` over the input image.
        boxes: ``[B, k, 4]`` xyxy in input pixels (the map's cell ``(i, j)`` covers pixels
            ``[j * stride, (j + 1) * stride)`` horizontally).
        size: output side.

    Returns:
        ``[B * k, C, size, size]`` fp32, image-major (box ``j`` of image ``i`` is row ``i * k + j``).
    """
    b, k = boxes.shape[:2]
    ids = torch.arange(b, device=boxes.device, dtype=torch.float32).repeat_interleave(k)[:, None]
    rois = torch.cat([ids, boxes.reshape(b * k, 4).float()], dim=1)
    return roi_align(features.float(), rois, size, spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)


def apply_deltas(boxes: Tensor, deltas: Tensor) -> Tensor:
    """R-CNN box refinement: ``boxes [..., 4]`` xyxy moved by ``deltas [..., 4]`` =
    ``(dx, dy, dw, dh)``: centre shift in box sizes (times 0.1), log-size change (times 0.2).
    Zero deltas return the boxes. fp32."""
    boxes, deltas = boxes.float(), deltas.float()
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=1e-3)
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    scale = deltas.new_tensor(_DELTA_SCALE)
    d = deltas * scale
    centre = centre + d[..., :2] * wh
    wh = wh * torch.exp(d[..., 2:].clamp(max=_MAX_LOG_SCALE))
    return torch.cat([centre - wh / 2, centre + wh / 2], dim=-1)


class RoiVerifier(nn.Module):
    """Second stage on the ``top_k`` peaks of the head's score map.

    Each candidate's search RoI (RoIAlign, ``pool`` x ``pool``, finest level) is compared with the
    fused references' RoI (the whole template map pooled alike) through ``[roi, ref, roi * ref,
    |roi - ref|, maps]`` -> two conv blocks -> an MLP, giving a hidden vector ``h``; ``maps`` are
    the matching evidence the head had at the candidate, pooled alike (the finest level's
    correlation and the similarity maps). The verifier's
    logit is ``linear([h, first-stage logit, cosine(roi, ref)])``, initialised to pass the
    first-stage logit through, so an untrained verifier ranks as the head does; ``deltas =
    linear(h)`` (zero at start) refine the box (:func:`apply_deltas`).

    Args:
        channels: ``C`` of the neck maps. stride: of the finest level. maps: channels of the
        correlation and similarity maps together. top_k: candidates per image. pool: RoI side. hidden: width of the comparison. samples, positive_iou,
        negative_iou: how :meth:`criterion` samples and labels training boxes.

    ``forward(head_outputs, inputs)`` returns ``logits [B, 1, k]``, ``boxes [B, k, 4]`` (refined,
    xyxy px), ``candidates [B, k, 4]`` (the head's boxes), ``candidate_logits [B, k]``,
    ``first_stage`` (the head's outputs) and what the training criterion needs to verify boxes of
    its own (``roi_inputs``).
    """

    decoding = "nms"  # two peaks may refine onto one object (see :class:`~..heads.base.Head`)

    def __init__(self, channels: int, stride: int, maps: int = 0, top_k: int = 8, pool: int = 7, hidden: int = 128,
                 samples: int = 8, positive_iou: float = 0.5, negative_iou: float = 0.4):
        super().__init__()
        if not 0.0 <= negative_iou <= positive_iou:
            raise ValueError(f"RoiVerifier: need 0 <= negative_iou <= positive_iou, got {negative_iou}, {positive_iou}")
        self.stride, self.top_k, self.pool = int(stride), int(top_k), int(pool)
        self.samples, self.positive_iou, self.negative_iou = int(samples), float(positive_iou), float(negative_iou)
        self.maps = int(maps)
        self.compare = nn.Sequential(
            nn.Conv2d(4 * channels + maps, hidden, 3, padding=1), nn.GroupNorm(_group_count(hidden), hidden), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1, stride=2), nn.GroupNorm(_group_count(hidden), hidden), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU())
        self.score = nn.Linear(hidden + 2, 1)
        self.delta = nn.Linear(hidden, 4)
        for layer in (self.score, self.delta):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        with torch.no_grad():
            self.score.weight[0, hidden] = 1.0  # pass the first-stage logit through at start

    def verify(self, features: Tensor, templates: Tensor, maps: Tensor | None, boxes: Tensor,
               prior: Tensor) -> tuple[Tensor, Tensor]:
        """Score and refine ``boxes [B, k, 4]`` (xyxy px) given the finest search map
        ``features [B, C, H, W]``, the fused reference map ``templates [B, C, h, w]``, the
        matching maps ``maps [B, M, H', W']`` (all of the same stride; None when ``M`` is 0) and
        each box's first-stage logit ``prior [B, k]``. Returns ``(logits [B, k] fp32, refined
        boxes [B, k, 4] fp32)``."""
        b, k = boxes.shape[:2]
        roi = pool_boxes(features, boxes, self.stride, self.pool)
        h, w = templates.shape[-2:]
        whole = boxes.new_tensor([0.0, 0.0, w * self.stride, h * self.stride]).float().expand(b, 1, 4)
        ref = pool_boxes(templates, whole, self.stride, self.pool).repeat_interleave(k, dim=0)
        parts = [roi, ref, roi * ref, (roi - ref).abs()]
        if maps is not None:
            parts.append(pool_boxes(maps, boxes, self.stride, self.pool))
        hidden = self.mlp(self.compare(torch.cat(parts, dim=1)))
        cosine = F.cosine_similarity(roi.mean((2, 3)), ref.mean((2, 3)), dim=1)
        extra = torch.stack([prior.reshape(b * k).float(), cosine], dim=1).to(hidden.dtype)
        logits = self.score(torch.cat([hidden, extra], dim=1)).float().reshape(b, k)
        refined = apply_deltas(boxes, self.delta(hidden).reshape(b, k, 4))
        return logits, refined

    def criterion(self, first_stage: nn.Module, iou_type: str) -> RefineCriterion:
        """The loss: ``first_stage``'s terms on the head's outputs plus the verifier's
        (:class:`~.criterion.RefineCriterion`)."""
        return RefineCriterion(first_stage, self.verify, self.stride, iou_type, self.samples, self.positive_iou,
                               self.negative_iou)

    def decode(self, outputs: dict, score_threshold: float, nms_iou: float,
               max_detections: int) -> list[tuple[Tensor, Tensor]]:
        """Per image ``(boxes [N, 4], scores [N])``: the verified candidates above the threshold,
        NMS'd (two peaks may refine onto one object)."""
        return postprocess(outputs["logits"], outputs["boxes"], score_threshold, nms_iou, max_detections)

    def forward(self, outputs: dict, inputs: HeadInputs) -> dict:
        logits = outputs["logits"]  # [B, H0, W0]
        b = logits.shape[0]
        peaks = candidate_peaks(logits).flatten(1)
        k = min(self.top_k, peaks.shape[1])
        idx = peaks.topk(k, dim=1).indices
        prior = logits.float().flatten(1).gather(1, idx).detach()
        candidates = outputs["boxes"].float().gather(1, idx[..., None].expand(b, k, 4)).detach()
        features, templates = inputs.features[0], inputs.templates[0]
        evidence = [inputs.correlations[0], *inputs.similarities] if self.maps else []
        maps = torch.cat([m.to(features.dtype) for m in evidence], dim=1) if evidence else None
        verified, refined = self.verify(features, templates, maps, candidates, prior)
        return {"logits": verified[:, None, :], "boxes": refined, "candidates": candidates,
                "candidate_logits": prior, "stride": outputs["stride"], "image_size": outputs["image_size"],
                "first_stage": outputs, "roi_inputs": (features, templates, maps, logits)}


@dataclass(frozen=True)
class RoiRefinerConfig(PartConfig):
    """``model.refine`` of ``type: roi``."""

    type: str = "roi"
    top_k: int = field(default=8, metadata=bounds(1))  # candidates verified per frame
    pool: int = field(default=7, metadata=bounds(1))  # RoIAlign output side
    channels: int = field(default=128, metadata=bounds(8))  # width of the comparison
    samples: int = field(default=8, metadata=bounds(0))  # training: boxes sampled around the truth per frame
    positive_iou: float = field(default=0.5, metadata=bounds(0.0, 1.0, lo_open=True))  # a box is the target from here
    negative_iou: float = field(default=0.4, metadata=bounds(0.0, 1.0))  # ... and not it below this (between: ignored)


@REFINERS.register("roi", RoiRefinerConfig)
def build_roi_verifier(cfg: RoiRefinerConfig, channels: int, stride: int, similarities: int) -> RoiVerifier:
    if cfg.negative_iou > cfg.positive_iou:
        raise ValueError(f"negative_iou {cfg.negative_iou} is above positive_iou {cfg.positive_iou}")
    # the depthwise correlation has the neck's channels; the similarity maps add theirs
    return RoiVerifier(channels, stride, channels + similarities, cfg.top_k, cfg.pool, cfg.channels, cfg.samples,
                       cfg.positive_iou, cfg.negative_iou)
