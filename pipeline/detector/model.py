"""The reference-guided detector: registered parts wired backbone -> neck -> fusion ->
correlation and similarities -> head, and the builders that read config."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads.base import Head, HeadInputs
from .registry import BACKBONES, CORRELATIONS, FUSIONS, HEADS, NECKS, REFINERS, SIMILARITIES
from .similarity.base import Similarity

if TYPE_CHECKING:  # config is read only by the builders
    from pipeline.config import ModelConfig, TrainConfig

__all__ = ["ReferenceDetector", "build_detector", "build_criterion"]


def _pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Zero-pad the bottom/right of ``[..., H, W]`` up to multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


class ReferenceDetector(nn.Module):
    """Find the object shown in 1..K reference photos (templates) in a search image.

    The backbone and neck encode the templates and the search image alike. Per level the K
    template maps are fused (one fusion per level) and correlated with the search map; the
    similarities add further maps at the finest level; the head turns all that into scored boxes.
    A learned softmax over ``level_logits`` says how much each level counts.

    Images are float RGB in ``[0, 1]``, ``[..., 3, H, W]``; ``pixel_mean``/``pixel_std``
    normalisation (saved with the weights) is applied inside. Any size works: inputs are
    zero-padded (after normalisation) on the bottom/right to a multiple of the coarsest stride.

    Args:
        backbone: ``forward(x) -> list of maps``, with ``mean``/``std`` of its weights.
        neck: backbone maps -> one ``[B, C, H / 2**L, W / 2**L]`` map per level ``L``, with
            ``strides``.
        fusions: one template fusion per level.
        correlation: ``(search map, fused template) -> [B, C, h, w]``.
        similarities: further :class:`Similarity` maps for the head.
        head: a :class:`Head`.
        refiner: an optional second stage, ``refiner(head outputs, HeadInputs) -> outputs`` with
            ``decode`` (:mod:`.refiners`); its scores are then the final ones.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, fusions: Sequence[nn.Module], correlation: nn.Module,
                 similarities: Sequence[Similarity], head: Head, refiner: nn.Module | None = None):
        super().__init__()
        strides = [int(s) for s in neck.strides]
        if len(fusions) != len(strides):
            raise ValueError(f"ReferenceDetector: {len(fusions)} fusions for {len(strides)} levels")
        self.backbone = backbone
        self.neck = neck
        self.fusions = nn.ModuleList(fusions)
        self.correlation = correlation
        self.level_logits = nn.Parameter(torch.zeros(len(strides)))
        self.similarities = nn.ModuleList(similarities)
        self.head = head
        self.refiner = refiner
        self.stride = strides[0]
        self.pad_multiple = max(strides + [int(s) for s in getattr(backbone, "strides", [])])
        # Saved with the weights: a checkpoint is read back with the normalisation it was trained
        # with (it depends on where the backbone's weights came from, which inference does not load).
        self.register_buffer("pixel_mean", torch.tensor(backbone.mean).view(3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(backbone.std).view(3, 1, 1))
        self._register_load_state_dict_pre_hook(_keep_missing_normalisation, with_module=True)

    def _features(self, images: Tensor) -> list[Tensor]:
        """``[N, 3, H, W]`` in [0, 1] -> neck maps, finest first."""
        if not images.is_floating_point():
            raise TypeError(f"expected float images in [0, 1], got {images.dtype} (convert with x.float() / 255)")
        x = (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)
        return self.neck(self.backbone(_pad_to_multiple(x, self.pad_multiple)))

    def encode_templates(self, templates: Tensor, mask: Tensor | None = None) -> list[Tensor]:
        """Fused template features, one ``[B, C, h_l, w_l]`` per level, then what each similarity
        encodes the references into (e.g. a colour histogram ``[B, bins², 1, 1]``).

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
        for similarity in self.similarities:
            extra = similarity.encode(templates, mask)
            if extra is not None:
                encoded.append(extra)
        return encoded

    def detect(self, search: Tensor, templates_encoded: Sequence[Tensor]) -> dict[str, Any]:
        """Detect in ``search [B, 3, H, W]`` given :meth:`encode_templates` output.

        Returns the head's dict; the dense heads give ``logits [B, H0, W0]``, ``ltrb [B, 4, H0,
        W0]`` fp32 px from each cell centre to the box sides, ``boxes [B, H0 * W0, 4]`` fp32 xyxy
        input pixels (row-major cells), ``stride`` and ``image_size (H, W)``, with
        ``H0 = ceil(H / stride)``, ``W0 = ceil(W / stride)``; the query head gives ``logits [B, 1,
        N]`` and ``boxes [B, N, 4]``, one per query (and ``aux``, per earlier decoder layer). With a
        refiner, its outputs: ``logits [B, 1, k]`` and ``boxes [B, k, 4]`` of the verified
        candidates, the head's own under ``first_stage``. Always ``appearance``: the finest neck map
        ``[B, C, H0, W0]``, from which a candidate's appearance embedding is pooled.
        """
        if search.dim() != 4 or search.shape[1] != 3:
            raise ValueError(f"detect: expected search [B, 3, H, W], got {tuple(search.shape)}")
        return self._detect_features(self._features(search), templates_encoded, search)

    def _detect_features(self, feats: Sequence[Tensor], templates_encoded: Sequence[Tensor], search: Tensor) -> dict[str, Any]:
        """Correlation, similarities and head on precomputed search maps of ``search``."""
        levels = len(self.fusions)
        extras = [s for s in self.similarities if s.encodes]
        if len(templates_encoded) != levels + len(extras):
            raise ValueError(f"detect: expected {levels + len(extras)} encoded template tensors, "
                             f"got {len(templates_encoded)}")
        b = feats[0].shape[0]
        encoded = []
        for t in templates_encoded:
            if t.shape[0] != b:
                if t.shape[0] != 1:
                    raise ValueError(f"detect: template batch {t.shape[0]} does not match search batch {b}")
                t = t.expand(b, *t.shape[1:])
            encoded.append(t)
        fused, extra = encoded[:levels], iter(encoded[levels:])
        level_weights = self.level_logits.softmax(0)
        # Correlations before similarities: the order in which autograd sums a shared input's
        # gradients, which decides how bf16 training rounds them.
        correlations = [self.correlation(f, t) for f, t in zip(feats, fused)]
        maps = []
        for similarity in self.similarities:
            state = next(extra) if similarity in extras else None
            maps.append(similarity(search, feats, fused, state, level_weights).to(feats[0].dtype))
        inputs = HeadInputs(features=feats, correlations=correlations, similarities=maps,
                            level_weights=level_weights, image_size=tuple(search.shape[-2:]), templates=fused)
        outputs = self.head(inputs)
        outputs = outputs if self.refiner is None else self.refiner(outputs, inputs)
        outputs["appearance"] = feats[0]  # candidates' appearance embeddings are pooled from it (tracking)
        return outputs

    @property
    def decoding(self) -> str:
        """How :meth:`decode` picks boxes (``"nms"`` or ``"top"``, see :class:`Head`)."""
        return (self.head if self.refiner is None else self.refiner).decoding

    def decode(self, outputs: dict[str, Any], score_threshold: float, nms_iou: float,
               max_detections: int) -> list[tuple[Tensor, Tensor]]:
        """The head's (or refiner's) decoding of :meth:`detect` outputs: per image ``(boxes [N, 4],
        scores [N])``."""
        return (self.head if self.refiner is None else self.refiner).decode(outputs, score_threshold, nms_iou, max_detections)

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

    A part that cannot be built from these params (unknown model name, missing level, weights
    file missing or not fitting, hub unreachable, neck and backbone that do not fit) is reported
    as a ConfigError naming the section.
    """
    from pipeline.config import ConfigError  # local: config is read here only

    try:
        backbone = BACKBONES.build(cfg.backbone, levels=cfg.levels)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        raise ConfigError(f"model.backbone / model.levels: {exc}") from None
    try:
        neck = NECKS.build(cfg.neck, in_channels=backbone.channels, in_strides=backbone.strides, levels=cfg.levels)
    except ValueError as exc:
        raise ConfigError(f"model.neck / model.levels: {exc}") from None
    stride = int(neck.strides[0])
    fusions = [FUSIONS.build(cfg.fusion, channels=cfg.neck.channels) for _ in cfg.levels]
    correlation = CORRELATIONS.build(cfg.correlation)
    similarities = [SIMILARITIES.build(s, stride=stride) for s in cfg.similarities]
    head = HEADS.build(cfg.head, channels=cfg.neck.channels, levels=len(cfg.levels),
                       similarities=sum(s.channels for s in similarities), stride=stride)
    try:
        refiner = REFINERS.build(cfg.refine, channels=cfg.neck.channels, stride=stride,
                                 similarities=sum(s.channels for s in similarities))
    except ValueError as exc:
        raise ConfigError(f"model.refine: {exc}") from None
    return ReferenceDetector(backbone, neck, fusions, correlation, similarities, head, refiner)


def build_criterion(cfg: TrainConfig, model: ReferenceDetector) -> nn.Module:
    """The loss of ``model``'s head (and refiner), with the ``train`` section's settings (weights:
    ``cfg.loss_weights``)."""
    criterion = model.head.criterion(cfg.iou_type, cfg.focal_alpha, cfg.focal_gamma, cfg.pos_radius)
    return criterion if model.refiner is None else model.refiner.criterion(criterion, cfg.iou_type)
