"""Small detector configs for tests, written as params.yaml's model section would be."""

from __future__ import annotations

import copy
from typing import Any

from pipeline.config import ModelConfig, parse_params

#: A random-init ConvNeXt-atto detector with 16-channel neck and head.
TINY = {"backbone": {"name": "convnext_atto", "pretrained": False}, "neck": {"channels": 16},
        "head": {"channels": 16}}


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def model_config(**sections: Any) -> ModelConfig:
    """:data:`TINY` with ``sections`` merged in (nested mappings merge, other values replace)."""
    return parse_params({"model": _merge(TINY, sections)}).model
