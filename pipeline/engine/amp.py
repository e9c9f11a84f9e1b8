"""Mixed precision: which autocast dtype and whether a GradScaler is needed, per device."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import get_args

import torch

from pipeline.config import AmpMode, ConfigError


@dataclass(frozen=True)
class Precision:
    """Resolved mixed-precision mode for one device."""

    device_type: str
    dtype: torch.dtype | None  # None = full fp32

    @property
    def uses_scaler(self) -> bool:
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range.
        return self.dtype == torch.float16

    @property
    def name(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.uses_scaler)


#: The accepted precision modes (``train.amp``, ``evaluate.amp``, ``predict --amp``).
AMP_MODES: tuple[str, ...] = get_args(AmpMode)


def resolve_precision(mode: str, device: torch.device, key: str = "train.amp") -> Precision:
    """``auto`` = fp16 on CUDA, bf16 on CPU; ``fp16`` on CPU is refused (CPU kernels are slow/absent).

    ``key`` names the setting in the error raised for a bad ``mode`` (a :class:`ConfigError`).
    """
    kind = device.type
    if mode not in AMP_MODES:
        raise ConfigError(f"{key}: {mode!r} is not one of {', '.join(AMP_MODES)}")
    if mode == "off":
        return Precision(kind, None)
    if mode == "auto":
        return Precision(kind, torch.float16 if kind == "cuda" else torch.bfloat16)
    if mode == "fp16" and kind != "cuda":
        raise ConfigError(f"{key}: fp16 needs a CUDA device; use bf16 or auto on CPU")
    return Precision(kind, torch.float16 if mode == "fp16" else torch.bfloat16)
