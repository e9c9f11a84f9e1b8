"""The reference-guided detector and its builders (the only code here that reads config)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import Backbone
from .colour import colour_similarity, template_histogram
from .correlation import Correlation
from .fpn import FPN
from .fusion import TemplateFusion
from .matching import PrototypeMatching
from .head import DetectionHead, decode_boxes, ltrb_from_raw
from .match_head import MatchHead, and_logits
from .losses import DetectionCriterion

if TYPE_CHECKING:  # config is read only by the builders
    from pipeline.config import ModelConfig, TrainConfig

__all__ = ["ReferenceDetector", "build_detector", "build_criterion"]


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """``x [B, C, h, w]`` bilinearly resized to ``size`` (returned as is when it already fits)."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad the bottom/right of ``[..., H, W]`` up to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


class ReferenceDetector(nn.Module):
    """Find the object shown in 1..K reference photos (templates) in a search image.

    One backbone + FPN encodes both the templates and the search image. Per pyramid level the K
    template maps are fused (:class:`TemplateFusion`) and depth-wise correlated with the search map
    (:class:`Correlation`); the correlation maps of all levels are upsampled (bilinear) to the
    finest level, combined with learned softmax weights, concatenated with the finest search
    features and fed to the anchor-free head (:class:`DetectionHead`). Detection happens at the
    finest level's stride (``stride``, e.g. 4 for levels ``[2, 3]``).

    Images are float RGB in ``[0, 1]``, ``[..., 3, H, W]``; the backbone's mean/std normalisation
    is applied inside. Any size works: inputs are zero-padded (after normalisation) on the
    bottom/right to a multiple of the coarsest stride, and the outputs cover
    ``ceil(H / stride) x ceil(W / stride)`` cells. The network is fully convolutional, so weights
    trained on crops apply to full frames.

    Args:
        backbone: the shared feature extractor.
        fpn_channels: channels of the FPN outputs (and of the template / correlation maps).
        fusion: ``"attention"`` or ``"average"`` (see :class:`TemplateFusion`).
        corr_kernel: side of the template kernel per level.
        corr_normalize: cosine-normalised correlation (see :class:`Correlation`).
        head_channels: channels of the head's hidden convs.
        head_convs: number of hidden conv blocks of the head.
        similarity_skip: add ``gain * cosine similarity`` (per cell, levels fused, minus its
            mean over the image) to the objectness logit, as SiamFC scores a response map.
        match_grid, match_top: prototype matching (see :mod:`.matching`): the template's centre is
            pooled to ``match_grid²`` part vectors and the ``match_top`` best cosine similarities
            per search cell go to the head; 0 = off.
        search_features: also feed the finest search features to the head (seed 000); False =
            correlation maps only (seed 001), which forces the head to rely on matching.
        box_prior_px: initial predicted distance from cell centre to each box side, in pixels.
        colour_bins: > 0 also feeds the head the colour similarity of each cell's surroundings
            with the references (see :mod:`.colour`; ``colour_bins²`` chromaticity bins, windows of
            2, 4 and 8 cells); :meth:`encode_templates` then returns the references' histogram
            as one more element, ``[B, colour_bins², 1, 1]``, after the per-level maps.
        head: ``"joint"``: one head on the concatenated correlation maps, search features and
            similarities; ``"factorized"``: objectness and box from the search features alone
            (class-agnostic) plus a :class:`MatchHead` logit from the similarity maps alone
            (per-level cosine similarity, prototype matches, colour similarity); see
            :mod:`.match_head` for why this generalises to unseen objects.
        match_gate: how a factorized head combines its two logits: ``"sum"`` (odds multiply) or
            ``"and"`` (probabilities multiply, :func:`.match_head.and_logits`).
    """

    def __init__(
        self,
        backbone: Backbone,
        fpn_channels: int = 64,
        fusion: Literal["attention", "average"] = "attention",
        corr_kernel: int = 3,
        corr_normalize: bool = True,
        head_channels: int = 64,
        head_convs: int = 2,
        box_prior_px: float = 32.0,
        search_features: bool = True,
        similarity_skip: bool = True,
        match_grid: int = 0,
        match_top: int = 4,
        colour_bins: int = 0,
        head: Literal["joint", "factorized"] = "joint",
        match_gate: Literal["sum", "and"] = "sum",
    ):
        super().__init__()
        self.backbone = backbone
        self.fpn = FPN(backbone.channels, fpn_channels)
        n = len(backbone.strides)
        self.fusions = nn.ModuleList(TemplateFusion(fpn_channels, fusion) for _ in range(n))
        self.correlation = Correlation(corr_kernel, corr_normalize)
        self.level_logits = nn.Parameter(torch.zeros(n))  # softmax -> weight of each level's correlation
        self.stride = int(backbone.strides[0])
        self.pad_multiple = int(max(backbone.strides))
        self.search_features = search_features
        # SiamFC-style direct path: the cosine-similarity map adds to the objectness logit, so the
        # loss shapes the features for matching from the first step (a learned gain and offset).
        self.similarity_skip = similarity_skip
        self.similarity_gain = nn.Parameter(torch.tensor(5.0)) if similarity_skip else None
        self.matching = PrototypeMatching(match_grid, min(match_top, match_grid**2)) if match_grid > 0 else None
        self.colour_bins = colour_bins
        self.colour_windows = (2 * self.stride, 4 * self.stride, 8 * self.stride) if colour_bins else ()
        if head not in ("joint", "factorized"):
            raise ValueError(f"head must be 'joint' or 'factorized', got {head!r}")
        if match_gate not in ("sum", "and"):
            raise ValueError(f"match_gate must be 'sum' or 'and', got {match_gate!r}")
        self.factorized = head == "factorized"
        self.match_gate = match_gate
        similarities = (self.matching.top if self.matching else 0) + len(self.colour_windows)
        if self.factorized:
            self.head = DetectionHead(fpn_channels, head_channels, head_convs, box_prior=box_prior_px / self.stride)
            self.match_head = MatchHead(n + similarities, max(8, head_channels // 2))
        else:
            head_in = (2 * fpn_channels if search_features else fpn_channels) + similarities
            self.head = DetectionHead(head_in, head_channels, head_convs, box_prior=box_prior_px / self.stride)
            self.match_head = None
        # Saved with the weights: a checkpoint is read back with the normalisation it was trained
        # with (it depends on where the backbone's weights came from, which inference does not load).
        self.register_buffer("pixel_mean", torch.tensor(backbone.mean).view(3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(backbone.std).view(3, 1, 1))
        self._register_load_state_dict_pre_hook(_keep_missing_normalisation, with_module=True)

    # -- features ----------------------------------------------------------------------------

    def _features(self, images: Tensor) -> list[Tensor]:
        """``[N, 3, H, W]`` in [0, 1] -> FPN maps, finest first."""
        if not images.is_floating_point():
            raise TypeError(f"expected float images in [0, 1], got {images.dtype} (convert with x.float() / 255)")
        x = (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)
        x = _pad_to_multiple(x, self.pad_multiple)
        return self.fpn(self.backbone(x))

    def encode_templates(self, templates: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """Fused template features, one ``[B, fpn_channels, h_l, w_l]`` per level.

        Args:
            templates: ``[B, K, 3, T, T]`` (``[B, 3, T, T]`` is taken as K = 1).
            mask: ``[B, K]`` bool, True for real templates (padding templates are ignored).

        The result depends only on the templates, so it can be computed once per object and
        passed to :meth:`detect` for every frame (a batch of 1 is broadcast over the frames).
        """
        if templates.dim() == 4:
            templates = templates.unsqueeze(1)
        if templates.dim() != 5 or templates.shape[2] != 3:
            raise ValueError(f"encode_templates: expected templates [B, K, 3, T, T], got {tuple(templates.shape)}")
        b, k = templates.shape[:2]
        feats = self._features(templates.flatten(0, 1))
        encoded = [fuse(f.reshape(b, k, *f.shape[1:]), mask) for fuse, f in zip(self.fusions, feats)]
        if self.colour_bins:
            encoded.append(template_histogram(templates, mask, self.colour_bins)[..., None, None])
        return encoded

    def detect(self, search: Tensor, templates_encoded: Sequence[Tensor]) -> dict[str, Any]:
        """Detect in ``search [B, 3, H, W]`` given :meth:`encode_templates` output.

        Returns a dict:
            ``logits`` ``[B, H0, W0]`` objectness logits;
            ``ltrb`` ``[B, 4, H0, W0]`` fp32 distances (px) from each cell centre to the box sides;
            ``boxes`` ``[B, H0 * W0, 4]`` fp32 ``xyxy`` boxes in input pixels, row-major cells;
            ``stride`` int, pixels per cell; ``image_size`` ``(H, W)`` of the input;
        with ``H0 = ceil(H / stride)``, ``W0 = ceil(W / stride)``.
        """
        if search.dim() != 4 or search.shape[1] != 3:
            raise ValueError(f"detect: expected search [B, 3, H, W], got {tuple(search.shape)}")
        return self._detect_features(self._features(search), templates_encoded, search)

    def _detect_features(self, feats: Sequence[Tensor], templates_encoded: Sequence[Tensor], search: Tensor) -> dict[str, Any]:
        """Correlation + head on precomputed search FPN maps of ``search`` (see :meth:`detect`)."""
        expected = len(self.fusions) + (1 if self.colour_bins else 0)
        if len(templates_encoded) != expected:
            raise ValueError(f"detect: expected {expected} encoded template tensors, got {len(templates_encoded)}")
        image_size = tuple(search.shape[-2:])
        b = feats[0].shape[0]
        h, w = image_size
        size0 = feats[0].shape[-2:]
        level_w = self.level_logits.softmax(0)
        # The joint head reads the weighted sum of the full correlation maps; everything else only
        # their channel means (cosine similarity per cell). Bilinear upsampling is linear, so the
        # mean is taken before upsampling: one channel is resized instead of fpn_channels.
        need_fused = self.match_head is None
        need_cosines = self.match_head is not None or self.similarity_gain is not None
        fused = matched = None
        cosines = []  # per level [B, 1, H0, W0] fp32: channel mean of the normalised correlation
        for i, (f, t) in enumerate(zip(feats, templates_encoded)):
            if t.shape[0] != b:
                if t.shape[0] != 1:
                    raise ValueError(f"detect: template batch {t.shape[0]} does not match search batch {b}")
                t = t.expand(b, *t.shape[1:])
            c = self.correlation(f, t)
            if need_cosines:
                cosines.append(_resize(c.float().mean(1, keepdim=True), size0))
            if need_fused:
                c = _resize(c, size0) * level_w[i].to(c.dtype)
                fused = c if fused is None else fused + c
            if self.matching is not None:
                m = _resize(self.matching(f, t), size0) * level_w[i]
                matched = m if matched is None else matched + m
        dtype = feats[0].dtype if fused is None else fused.dtype
        similarities: list[Tensor] = []
        if self.matching is not None:
            similarities.append(matched.to(dtype))
        if self.colour_bins:
            reference = templates_encoded[-1].flatten(1)
            if reference.shape[0] != b:
                reference = reference.expand(b, -1)
            colour = colour_similarity(search, reference, self.stride, self.colour_windows, self.colour_bins)
            colour = F.pad(colour, (0, size0[1] - colour.shape[-1], 0, size0[0] - colour.shape[-2]))
            similarities.append(colour.to(dtype))
        if self.match_head is not None:
            logits, raw = self.head(feats[0])
            match_in = torch.cat([c.to(dtype) for c in cosines] + similarities, dim=1)  # [B, levels + sims, H0, W0]
            match = self.match_head(match_in)
            logits = and_logits(logits, match) if self.match_gate == "and" else logits + match
        else:
            parts = [fused, feats[0]] if self.search_features else [fused]
            logits, raw = self.head(torch.cat(parts + similarities, dim=1))
        h0, w0 = -(-h // self.stride), -(-w // self.stride)
        logits = logits[:, 0, :h0, :w0]
        if self.similarity_gain is not None:
            # level-weighted cosine similarity per cell, in [-1, 1]; centred per image so that
            # only contrast (this cell matches better) moves the logit
            similarity = sum(w * cos[:, 0] for w, cos in zip(level_w.float(), cosines))
            similarity = similarity - similarity.mean(dim=(1, 2), keepdim=True)
            logits = logits + self.similarity_gain * similarity[:, :h0, :w0].to(logits.dtype)
        ltrb = ltrb_from_raw(raw[:, :, :h0, :w0], self.stride)
        return {
            "logits": logits,
            "ltrb": ltrb,
            "boxes": decode_boxes(ltrb, self.stride),
            "stride": self.stride,
            "image_size": (h, w),
        }

    def forward(
        self, templates: Tensor, search: Tensor, template_mask: Tensor | None = None, shifted_pairs: bool = False
    ) -> dict[str, Any]:
        """``detect(search, encode_templates(templates, template_mask))``.

        With ``shifted_pairs`` (training), every search image is also paired with the templates of
        the next sample in the batch (``roll(1)``), reusing the search features: the outputs then
        have batch ``2B``, the ``B`` true pairs first. For a different object the shifted pair is a
        free negative that punishes firing on any object-like blob instead of the reference.
        """
        encoded = self.encode_templates(templates, template_mask)
        if not shifted_pairs:
            return self.detect(search, encoded)
        if search.dim() != 4 or search.shape[1] != 3:
            raise ValueError(f"forward: expected search [B, 3, H, W], got {tuple(search.shape)}")
        feats = self._features(search)
        both_feats = [torch.cat([f, f]) for f in feats]
        both_templates = [torch.cat([t, t.roll(1, dims=0)]) for t in encoded]
        return self._detect_features(both_feats, both_templates, torch.cat([search, search]))


def _keep_missing_normalisation(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Checkpoints written before the normalisation was saved keep the backbone's timm default."""
    for name in ("pixel_mean", "pixel_std"):
        state_dict.setdefault(prefix + name, getattr(module, name))


def build_detector(cfg: ModelConfig) -> ReferenceDetector:
    """The detector described by the ``model`` section of params.yaml.

    A backbone that cannot be built from these params (unknown name, missing level, weights file
    missing or not fitting, hub unreachable) is reported as a ConfigError naming the keys.
    """
    from pipeline.config import ConfigError  # local: the detector package stays config-free

    try:
        backbone = Backbone(cfg.backbone, cfg.levels, cfg.pretrained)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise ConfigError(f"model.backbone / model.levels / model.pretrained: {exc}") from None
    return ReferenceDetector(
        backbone,
        fpn_channels=cfg.fpn_channels,
        fusion=cfg.fusion,
        corr_kernel=cfg.corr_kernel,
        corr_normalize=cfg.corr_normalize,
        head_channels=cfg.head_channels,
        search_features=cfg.search_features,
        similarity_skip=cfg.similarity_skip,
        match_grid=cfg.match_grid,
        match_top=cfg.match_top,
        box_prior_px=cfg.box_prior,
        colour_bins=cfg.colour_bins,
        head=cfg.head,
        match_gate=cfg.match_gate,
    )


def build_criterion(cfg: TrainConfig) -> DetectionCriterion:
    """The criterion described by the ``train`` section (weights: ``cfg.loss_weights``)."""
    return DetectionCriterion(
        iou_type=cfg.iou_type,
        focal_alpha=cfg.focal_alpha,
        focal_gamma=cfg.focal_gamma,
        pos_radius=cfg.pos_radius,
    )
