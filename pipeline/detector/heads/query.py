"""Set prediction with learned queries (``model.head.type: query``), DETR-style.

A few queries, conditioned on the reference, cross-attend to the search maps of every level
(features, correlations and, at the finest level, the similarity maps) through a small
transformer decoder; each query gives one scored box. The queries start at the best peaks of a
dense proposal score (two-stage query selection, as Deformable DETR and DINO do), which a
from-scratch set head needs to converge in a few epochs. Training matches queries to the target
one-to-one (:mod:`.matcher`, :mod:`.set_criterion`), so decoding needs no NMS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.config import PartConfig, bounds

from ..postprocess import candidate_peaks, top_detections
from ..registry import HEADS
from .base import Head, HeadInputs
from .dense import PRIOR_PROB
from .set_criterion import SetCriterion

__all__ = ["QueryHead", "QueryHeadConfig", "build_query_head", "sine_positions"]


def sine_positions(height: int, width: int, dim: int, device: torch.device | None = None,
                   dtype: torch.dtype = torch.float32, temperature: float = 10000.0) -> Tensor:
    """DETR's 2-D sine encoding of an ``height x width`` grid, ``[height * width, dim]`` row-major.

    Cell centres are normalised to ``(0, 2 pi)`` per axis, so the same image point gets the same
    code at every level; the first ``dim / 2`` channels encode y, the rest x (sin then cos).
    """
    if dim % 4:
        raise ValueError(f"sine_positions: dim must be a multiple of 4, got {dim}")
    freqs = temperature ** (torch.arange(dim // 4, device=device, dtype=torch.float32) / (dim // 4))
    y = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * (2 * math.pi)
    x = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * (2 * math.pi)
    py, px = y[:, None] / freqs, x[:, None] / freqs
    py = torch.cat([py.sin(), py.cos()], dim=1)[:, None, :].expand(height, width, dim // 2)
    px = torch.cat([px.sin(), px.cos()], dim=1)[None, :, :].expand(height, width, dim // 2)
    return torch.cat([py, px], dim=-1).reshape(height * width, dim).to(dtype)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class _MLP(nn.Sequential):
    """``depth`` linear layers with ReLU between them."""

    def __init__(self, dim: int, out: int, depth: int):
        layers: list[nn.Module] = []
        for _ in range(depth - 1):
            layers += [nn.Linear(dim, dim), nn.ReLU()]
        super().__init__(*layers, nn.Linear(dim, out))


class QueryHead(Head):
    """Learned queries -> transformer decoder on the search maps -> one scored box per query.

    Args:
        channels: ``C`` of the neck maps. levels: how many. similarities: further map count.
        stride: of the finest level (outputs' ``stride``, bookkeeping only).
        d_model: decoder width. queries: ``N``. layers: decoder layers. attention_heads: per layer.
        box_prior: untrained box half-size, px. costs: ``(class, l1, giou)`` matching weights.
        aux_loss: also output (and train) every earlier layer's predictions.

    Memory: per level ``[features, correlations (, similarities)]`` -> 1x1 conv to ``d_model``,
    plus a sine position code and a learned level code, flattened and concatenated. Query
    selection: a 1x1 conv scores every finest-level cell (``proposal_logits``, trained as a dense
    focal loss by the criterion); the ``N`` best local peaks become the queries' anchors, and
    their memory tokens are added to the queries. Queries: ``N`` learned embeddings,
    FiLM-modulated by the pooled fused reference maps of every level, so the decoder looks for
    this object. Boxes: ``sigmoid`` of the box MLP's ``(cx, cy, w, h)`` plus the query's anchor
    (centre, as a logit) and the prior size, relative to the image.

    ``forward(inputs) -> {"logits" [B, 1, N], "boxes" [B, N, 4] fp32 xyxy px, "proposal_logits"
    [B, H0, W0], "stride", "image_size", "aux": [{"logits", "boxes"}, ...] (layers - 1, with
    aux_loss)}``.
    """

    decoding = "top"

    def __init__(self, channels: int, levels: int, similarities: int, stride: int, d_model: int, queries: int,
                 layers: int, attention_heads: int, box_prior: float,
                 costs: tuple[float, float, float] = (2.0, 5.0, 2.0), aux_loss: bool = True):
        super().__init__()
        if d_model % attention_heads or d_model % 4:
            raise ValueError(f"QueryHead: channels ({d_model}) must be a multiple of 4 and of attention_heads "
                             f"({attention_heads})")
        self.stride = int(stride)
        self.d_model = d_model
        self.box_prior = float(box_prior)
        self.costs = costs
        self.aux_loss = aux_loss
        self.inputs = nn.ModuleList(
            nn.Conv2d(2 * channels + (similarities if level == 0 else 0), d_model, 1) for level in range(levels))
        self.level_embed = nn.Parameter(torch.randn(levels, d_model) * 0.02)
        self.query_embed = nn.Parameter(torch.randn(queries, d_model))
        self.condition = nn.Linear(levels * channels, 2 * d_model)  # FiLM: scale and shift per channel
        self.proposal = nn.Conv2d(d_model, 1, 1)
        nn.init.constant_(self.proposal.bias, _logit(PRIOR_PROB))
        self.layers = nn.ModuleList(
            # no dropout: small data sets, and deterministic training steps
            nn.TransformerDecoderLayer(d_model, attention_heads, 4 * d_model, dropout=0.0, batch_first=True,
                                       norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.score = nn.Linear(d_model, 1)
        self.box = _MLP(d_model, 4, 3)
        nn.init.constant_(self.score.bias, _logit(PRIOR_PROB))
        # zero last box layer: every query starts as its anchor with the prior size
        nn.init.zeros_(self.box[-1].weight)
        nn.init.zeros_(self.box[-1].bias)

    def _memory(self, inputs: HeadInputs) -> tuple[Tensor, Tensor]:
        """``(memory [B, sum h_l * w_l, d], finest projected map [B, d, h_0, w_0])``."""
        parts, finest = [], None
        for level, (proj, feat, corr) in enumerate(zip(self.inputs, inputs.features, inputs.correlations)):
            maps = [feat, corr.to(feat.dtype)] + ([s.to(feat.dtype) for s in inputs.similarities] if level == 0 else [])
            x = proj(torch.cat(maps, dim=1))
            finest = x if finest is None else finest
            b, d, h, w = x.shape
            pos = sine_positions(h, w, d, x.device, x.dtype) + self.level_embed[level].to(x.dtype)
            parts.append(x.flatten(2).transpose(1, 2) + pos)
        return torch.cat(parts, dim=1), finest

    def _select(self, finest: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """Proposal logits ``[B, h0, w0]`` (cut to the image), the queries' anchors ``[B, N, 2]``
        (centres as logits of the image fraction) and their memory tokens ``[B, N, d]``."""
        h, w = image_size
        h0, w0 = -(-h // self.stride), -(-w // self.stride)
        proposals = self.proposal(finest)[:, 0, :h0, :w0]
        n = min(self.query_embed.shape[0], h0 * w0)
        idx = candidate_peaks(proposals.detach()).flatten(1).topk(n, dim=1).indices  # [B, N]
        col, row = idx % w0, torch.div(idx, w0, rounding_mode="floor")
        centre = torch.stack([(col.float() + 0.5) * self.stride / w, (row.float() + 0.5) * self.stride / h], dim=-1)
        anchors = centre.clamp(1e-3, 1 - 1e-3).logit()
        token = finest.flatten(2).transpose(1, 2)  # [B, h_0 * w_0 (padded), d]
        flat = row * finest.shape[-1] + col  # index into the padded finest map
        picked = token.gather(1, flat[..., None].expand(-1, -1, token.shape[-1]))
        # the token's place, as the memory codes it: the query knows where it starts
        pos = sine_positions(finest.shape[-2], finest.shape[-1], token.shape[-1], token.device, token.dtype)
        return proposals, anchors, picked + pos[flat]

    def _queries(self, inputs: HeadInputs, n: int) -> Tensor:
        if len(inputs.templates) != len(self.inputs):
            raise ValueError(f"QueryHead: needs the fused reference maps of all {len(self.inputs)} levels "
                             f"(HeadInputs.templates), got {len(inputs.templates)}")
        pooled = torch.cat([t.mean(dim=(2, 3)) for t in inputs.templates], dim=1)
        scale, shift = self.condition(pooled).chunk(2, dim=1)
        return self.query_embed[:n] * (1 + scale[:, None]) + shift[:, None]  # [B, N, d]

    def _predict(self, x: Tensor, anchors: Tensor, image_size: tuple[int, int]) -> dict[str, Tensor]:
        x = self.norm(x)
        h, w = image_size
        raw = self.box(x).float()
        prior = torch.tensor([_logit(min(0.99, 2 * self.box_prior / w)), _logit(min(0.99, 2 * self.box_prior / h))],
                             device=raw.device)
        centre = (raw[..., :2] + anchors.float()).sigmoid()
        size = (raw[..., 2:] + prior).sigmoid()
        scale = torch.tensor([w, h], device=raw.device, dtype=torch.float32)
        boxes = torch.cat([(centre - size / 2) * scale, (centre + size / 2) * scale], dim=-1)
        return {"logits": self.score(x).transpose(1, 2), "boxes": boxes}

    def forward(self, inputs: HeadInputs) -> dict[str, Any]:
        memory, finest = self._memory(inputs)
        image_size = tuple(inputs.image_size)
        proposals, anchors, picked = self._select(finest, image_size)
        x = self._queries(inputs, anchors.shape[1]).to(memory.dtype) + picked.to(memory.dtype)
        aux = []
        for i, layer in enumerate(self.layers):
            x = layer(x, memory)
            if self.aux_loss and i + 1 < len(self.layers):
                aux.append(self._predict(x, anchors, image_size))
        out: dict[str, Any] = self._predict(x, anchors, image_size)
        out.update(stride=self.stride, image_size=image_size, proposal_logits=proposals)
        if self.aux_loss:
            out["aux"] = aux
        return out

    def criterion(self, iou_type: str, focal_alpha: float, focal_gamma: float, pos_radius: int) -> SetCriterion:
        """:class:`SetCriterion`; ``pos_radius`` shapes the proposal score's dense targets."""
        return SetCriterion(iou_type, focal_alpha, focal_gamma, *self.costs, pos_radius=pos_radius)  # type: ignore[arg-type]

    def decode(self, outputs: dict[str, Any], score_threshold: float, nms_iou: float,
               max_detections: int) -> list[tuple[Tensor, Tensor]]:
        """Best-scoring queries per image, no NMS (``nms_iou`` unused): matching taught the others
        not to repeat a box."""
        return top_detections(outputs["logits"], outputs["boxes"], score_threshold, max_detections)


@dataclass(frozen=True)
class QueryHeadConfig(PartConfig):
    """``model.head`` of ``type: query``."""

    type: str = "query"
    channels: int = field(default=64, metadata=bounds(8))  # decoder width (d_model)
    queries: int = field(default=16, metadata=bounds(1))
    layers: int = field(default=2, metadata=bounds(1))
    attention_heads: int = field(default=4, metadata=bounds(1))
    box_prior: float = field(default=16.0, metadata=bounds(1.0))  # untrained box half-size, px
    class_cost: float = field(default=2.0, metadata=bounds(0.0))
    l1_cost: float = field(default=5.0, metadata=bounds(0.0))
    giou_cost: float = field(default=2.0, metadata=bounds(0.0))
    aux_loss: bool = True


@HEADS.register("query", QueryHeadConfig)
def build_query_head(cfg: QueryHeadConfig, channels: int, levels: int, similarities: int, stride: int) -> nn.Module:
    return QueryHead(channels, levels, similarities, stride, cfg.channels, cfg.queries, cfg.layers,
                     cfg.attention_heads, cfg.box_prior, (cfg.class_cost, cfg.l1_cost, cfg.giou_cost), cfg.aux_loss)
