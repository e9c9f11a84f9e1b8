"""Where a backbone's pretrained weights come from: timm's hub (with a quick offline check) or a
local file; shared by every registered backbone."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from torch import nn

__all__ = ["WEIGHT_SUFFIXES", "hub_file", "hub_model", "strip_prefix", "no_hub_error"]

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_HUB_PROBE_TIMEOUT_S = 3.0


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


def no_hub_error(name: str, why: str) -> RuntimeError:
    return RuntimeError(
        f"cannot get timm's pretrained weights for backbone {name!r}: {why}. Download them on a "
        f"machine with internet access (e.g. timm.create_model({name!r}, pretrained=True) and "
        f"save its state_dict to a .safetensors or .pth file), then set model.pretrained to that "
        f"file's path, or use pretrained: false for random initialisation"
    )


def strip_prefix(sd: dict, prefixes: Sequence[str]) -> dict:
    """The entries under the first prefix that has any (e.g. the backbone of a whole detector
    checkpoint), with the prefix removed; ``sd`` itself when none has."""
    for p in prefixes:
        sub = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
        if sub:
            return sub
    return sd


def hub_file(name: str, cfg: dict) -> Path | None:
    """timm's weights for ``name`` (pretrained cfg ``cfg``) when already in the local cache."""
    cached, _ = _hub_source(cfg)
    return None if cached is None else Path(cached)


def hub_model(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=True, **kwargs)``, failing within seconds with a
    :func:`no_hub_error` when the hub is unreachable (no retry loop), offline or lacks them."""
    with torch.device("meta"):
        cfg = dict(getattr(timm.create_model(name, pretrained=False, **kwargs), "pretrained_cfg", {}) or {})
    _, host = _hub_source(cfg)
    if host is None:
        raise ValueError(f"timm has no pretrained weights for backbone {name!r}; use pretrained: false or a local file")
    if _offline():
        raise no_hub_error(name, "HF_HUB_OFFLINE is set and they are not in the local cache")
    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(k)), None)
    probe_host, probe_port = (host, 443)
    if proxy:  # the hub is reached through the proxy: probe that instead
        parsed = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        probe_host, probe_port = parsed.hostname or host, parsed.port or 443
    try:
        socket.create_connection((probe_host, probe_port), timeout=_HUB_PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise no_hub_error(name, f"{probe_host}:{probe_port} is unreachable ({exc})") from None
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except Exception as exc:  # network/hub errors come in many types
        raise no_hub_error(name, f"download failed ({type(exc).__name__}: {exc})") from exc
