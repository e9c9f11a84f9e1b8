"""timm Vision Transformer as a single-map feature backbone (stride 16).

A plain ViT has no pyramid: every block works on one token grid. :class:`ViTBackbone` returns that
grid's last tokens (after the final norm) as one ``[B, embed_dim, H/16, W/16]`` map, to be spread
over pyramid levels by a neck such as :class:`pipeline.detector.necks.simple_pyramid.SimplePyramid`.

The map is at stride 16 whatever the patch size: a patch-14 model (DINOv2) sees the input resized
by 14/16 first, so its token grid is exactly ``H/16 x W/16`` and every downstream stride stays a
power of two, as the rest of the detector (levels, ``2**L`` strides) assumes.

Weights (``pretrained``):

* ``False``: random initialisation.
* ``True``: timm's own weights for ``name`` (a tag such as ``vit_small_patch14_dinov2.lvd142m``
  selects which), from the local Hugging Face / torch hub cache when present; otherwise the hub
  must be reachable. When it is not, this fails within seconds with an error telling you to pass a
  local weights file instead.
* a path (``str`` or :class:`os.PathLike`) to a local ``.safetensors`` / ``.pth`` / ``.pt`` /
  ``.bin`` file holding the state dict of ``timm.create_model(name)`` (a ``{"state_dict": ...}`` /
  ``{"model": ...}`` wrapper, keys prefixed ``body.`` / ``backbone.body.`` and the layouts timm's
  ``checkpoint_filter_fn`` converts are fine). Every weight but the classifier head must be there.

Weights packages (:mod:`pipeline.detector.weights_packages`) hold CNN weights only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import LoraConfig, PartConfig, bounds

from ..registry import BACKBONES
from . import weights_packages
from .lora import apply_lora_config
from .weights import WEIGHT_SUFFIXES, hub_file, hub_model, strip_prefix

__all__ = ["ViTBackbone", "ViTBackboneConfig", "build_vit_backbone"]

STRIDE = 16


def _is_vit(model: nn.Module) -> bool:
    return all(hasattr(model, a) for a in ("patch_embed", "blocks", "num_prefix_tokens", "forward_features"))


def _not_a_vit(name: str) -> ValueError:
    return ValueError(
        f"backbone {name!r} is not a timm Vision Transformer (it needs patch_embed and blocks); "
        f"use e.g. vit_small_patch14_dinov2 or vit_tiny_patch16_224, or the CNN Backbone"
    )


class ViTBackbone(nn.Module):
    """A timm ViT whose last tokens form one feature map at stride 16.

    Args:
        name: timm ViT name, optionally with a pretrained tag (``"vit_small_patch14_dinov2"``,
            ``"vit_base_patch14_dinov2.lvd142m"``, ``"vit_tiny_patch16_224"``).
        pretrained: ``False``, ``True`` or a path to a local weights file (see module docstring).
        **overrides: architecture arguments for ``timm.create_model`` (``depth=2, embed_dim=48,
            num_heads=2`` for tiny test models). Weights must match the resulting architecture.

    Attributes:
        name: ``name``.
        channels: ``[embed_dim]``.
        strides: ``[16]``.
        levels: ``[4]`` (the stride-16 level).
        patch_size: the model's patch size (14 or 16 for the usual models).
        mean, std: the per-channel input normalisation the weights expect (RGB in [0, 1]).

    ``forward(x: [B, 3, H, W]) -> [Tensor [B, embed_dim, H/16, W/16]]`` (a list of one map), for
    ``H`` and ``W`` multiples of 16. The input must already be normalised with ``mean``/``std``.
    """

    def __init__(self, name: str, pretrained: bool | str | os.PathLike = False, **overrides):
        super().__init__()
        self.name = name
        self.body = self._create(name, pretrained, overrides)
        patch = tuple(int(p) for p in self.body.patch_embed.patch_size)
        if patch[0] != patch[1]:
            raise ValueError(f"backbone {name!r}: non-square patches {patch} are not supported")
        self.patch_size: int = patch[0]
        self.num_prefix_tokens: int = int(self.body.num_prefix_tokens)
        self.channels: list[int] = [int(self.body.embed_dim)]
        self.strides: list[int] = [STRIDE]
        self.levels: list[int] = [STRIDE.bit_length() - 1]
        cfg = getattr(self.body, "pretrained_cfg", None) or {}
        self.mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))

    def keep_blocks(self, count: int) -> None:
        """Run only the first ``count`` transformer blocks (pretrained early blocks stay as loaded)."""
        if not 1 <= count <= len(self.body.blocks):
            raise ValueError(f"backbone {self.name!r} has {len(self.body.blocks)} blocks, cannot keep {count}")
        self.body.blocks = self.body.blocks[:count]

    # -- construction ------------------------------------------------------------------------

    @staticmethod
    def _build(name: str, overrides: dict) -> nn.Module:
        """The randomly initialised ViT, headless, taking any input size (its position embedding is
        resampled to the token grid on each forward)."""
        kw = dict(num_classes=0, dynamic_img_size=True) | overrides
        try:
            model = timm.create_model(name, pretrained=False, **kw)
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                raise ValueError(f"backbone {name!r} is not a timm model") from None
            raise
        except TypeError:
            # A CNN builder rejects dynamic_img_size; a ViT one only a wrong override, which the
            # TypeError names better than we could.
            with torch.device("meta"):
                plain = timm.create_model(name, pretrained=False)
            if not _is_vit(plain):
                raise _not_a_vit(name) from None
            raise
        if not _is_vit(model):
            raise _not_a_vit(name)
        return model

    @staticmethod
    def _create(name: str, pretrained, overrides: dict) -> nn.Module:
        if pretrained is False or pretrained is None:
            return ViTBackbone._build(name, overrides)
        if pretrained is True:
            model = ViTBackbone._build(name, overrides)
            cached = hub_file(name, dict(model.pretrained_cfg))
            if cached is not None:
                ViTBackbone._load(model, name, cached)
                return model
            return hub_model(name, **(dict(num_classes=0, dynamic_img_size=True) | overrides))
        if isinstance(pretrained, str) and weights_packages.find_package(pretrained):
            raise ValueError(
                f"pretrained {pretrained!r} is a weights package; those hold CNN weights, not ones for "
                f"ViT backbone {name!r}. Use pretrained: true or a local weights file"
            )
        if isinstance(pretrained, (str, os.PathLike)):
            path = Path(pretrained)
            if not path.is_file():
                raise ValueError(
                    f"pretrained weights file for ViT backbone {name!r} not found: {path} (expected "
                    f"false, true or the path of a {'/'.join(WEIGHT_SUFFIXES)} file)"
                )
            model = ViTBackbone._build(name, overrides)
            ViTBackbone._load(model, name, path)
            return model
        raise TypeError(f"pretrained must be a bool or a path, got {type(pretrained).__name__}")

    @staticmethod
    def _load(model: nn.Module, name: str, path: Path) -> None:
        """Load the state dict in ``path`` into ``model``: every weight but the classifier head, of
        the right shape, or a ValueError naming the file.

        (timm's own ``pretrained_cfg_overlay=dict(file=...)`` loads a headless model non-strictly,
        so a checkpoint of another architecture would silently leave random weights.)
        """
        if path.suffix.lower() not in WEIGHT_SUFFIXES:
            raise ValueError(
                f"pretrained weights file {path}: unsupported suffix {path.suffix!r}, "
                f"expected one of {', '.join(WEIGHT_SUFFIXES)}"
            )
        try:
            sd = timm.models.load_state_dict(str(path))  # safetensors or torch.load(weights_only=True)
        except Exception as exc:
            raise ValueError(f"pretrained weights file {path}: cannot read it ({type(exc).__name__}: {exc})") from None
        sd = strip_prefix(sd, ("backbone.body.", "body."))  # a checkpoint of this backbone or of a detector
        # timm's converter (as its own loader applies): other key layouts (Meta's DINOv2, OpenCLIP),
        # position embeddings of another grid size (e.g. an img_size override) resampled.
        filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if filter_fn is not None:
            try:
                sd = filter_fn(sd, model)
            except Exception:  # a checkpoint of something else: the strict load below says what
                pass
        classifier = model.pretrained_cfg.get("classifier") or ()
        classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        sd = {k: v for k, v in sd.items() if not any(k == c or k.startswith(c + ".") for c in classifier)}
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"pretrained weights file {path} does not fit ViT backbone {name!r}: {exc}; expected a "
                f"state_dict of timm.create_model({name!r})"
            ) from None

    # -- freezing ----------------------------------------------------------------------------

    def layers_through(self, level: int) -> list[str]:
        """Names of the layers that output ``level`` or finer: none for level 0, and a ViT has no
        other level below its single map, so anything above 0 is an error."""
        if level == 0:
            return []
        raise ValueError(
            f"cannot freeze backbone {self.name!r} through level {level}: a ViT backbone has no pyramid "
            f"levels to freeze; use train.freeze_through_level: 0 (and LoRA to train a part of it)"
        )

    def freeze_through(self, level: int) -> list[str]:
        """Freeze the layers of :meth:`layers_through` (none); returns their names."""
        return self.layers_through(level)

    # -- forward -----------------------------------------------------------------------------

    def forward(self, x: Tensor) -> list[Tensor]:
        b, _, h, w = x.shape
        if h % STRIDE or w % STRIDE:
            raise ValueError(f"ViTBackbone: input size {h}x{w} is not a multiple of {STRIDE}; pad it first")
        gh, gw = h // STRIDE, w // STRIDE
        if self.patch_size != STRIDE:
            # Exactly one patch per 16x16 input cell. Antialiasing off: it would blur (14/16 is a
            # mild downscale) and is not supported by every export path.
            x = F.interpolate(x, size=(gh * self.patch_size, gw * self.patch_size), mode="bilinear",
                              align_corners=False, antialias=False)
        tokens = self.body.forward_features(x)  # [B, prefix + gh * gw, C], final norm applied
        tokens = tokens[:, self.num_prefix_tokens:]
        return [tokens.transpose(1, 2).reshape(b, tokens.shape[-1], gh, gw)]

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, patch_size={self.patch_size}, channels={self.channels}, "
                f"strides={self.strides}, levels={self.levels}")


@dataclass(frozen=True)
class ViTBackboneConfig(PartConfig):
    """``model.backbone`` of ``type: vit``: a timm ViT (DINOv2 by default) as one stride-16 map."""

    type: str = "vit"
    name: str = "vit_small_patch14_dinov2"
    pretrained: Union[bool, str] = False
    blocks: int = field(default=0, metadata=bounds(0))  # > 0: only the first N transformer blocks run
    lora: LoraConfig = field(default_factory=LoraConfig)


@BACKBONES.register("vit", ViTBackboneConfig)
def build_vit_backbone(cfg: ViTBackboneConfig, levels: Sequence[int]) -> ViTBackbone:
    """The ViT of ``cfg`` (``levels`` are the neck's to make), cut to ``cfg.blocks``, with LoRA."""
    backbone = ViTBackbone(cfg.name, cfg.pretrained)
    if cfg.blocks:
        backbone.keep_blocks(cfg.blocks)
    apply_lora_config(backbone, cfg.lora)
    return backbone
