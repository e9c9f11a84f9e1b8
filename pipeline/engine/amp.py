"""Mixed precision: which autocast dtype and whether a GradScaler is needed, per device."""

from __future__ import annotations

import logging
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import get_args

import torch

from pipeline.config import AmpMode, ConfigError
from pipeline.engine.cpu import cpu_info

log = logging.getLogger(__name__)


class SlowPrecisionWarning(UserWarning):
    """bf16 was asked for on a CPU that only emulates it (about 14x slower than fp32)."""


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


def resolve_precision(mode: str, device: torch.device, key: str = "train.amp",
                      native_bf16: bool | None = None) -> Precision:
    """The autocast precision for ``mode`` on ``device``.

    ``auto``: fp16 (with a GradScaler) on CUDA; bf16 on a CPU that runs it natively
    (AVX512-BF16, AMX, Arm BF16); fp32 everywhere else, since emulated bf16 is about 14x slower
    than fp32. An explicit ``bf16`` on a CPU without native support runs, with a
    :class:`SlowPrecisionWarning`; ``fp16`` on a CPU is refused (its kernels are slow or absent).
    ``native_bf16`` overrides what :func:`~pipeline.engine.cpu.cpu_info` detected; ``key`` names
    the setting in the :class:`ConfigError` raised for a bad ``mode``.
    """
    kind = device.type
    if mode not in AMP_MODES:
        raise ConfigError(f"{key}: {mode!r} is not one of {', '.join(AMP_MODES)}")
    if mode == "fp16" and kind != "cuda":
        raise ConfigError(f"{key}: fp16 needs a CUDA device; use bf16 or auto on CPU")
    if kind == "cpu" and mode in ("auto", "bf16"):
        if native_bf16 is None:
            native_bf16 = cpu_info().native_bf16
        if mode == "bf16" and not native_bf16:
            warnings.warn(f"{key}: bf16 on a CPU without native bf16 ({cpu_info().describe()}) is emulated and "
                          "about 14x slower than fp32; use auto or off", SlowPrecisionWarning, stacklevel=2)
    dtype: torch.dtype | None
    if mode == "off":
        dtype = None
    elif mode == "auto":
        dtype = {"cuda": torch.float16, "cpu": torch.bfloat16 if native_bf16 else None}.get(kind)
    else:
        dtype = torch.float16 if mode == "fp16" else torch.bfloat16
    return Precision(kind, dtype)


def _where(precision: Precision) -> str:
    return f"cpu: {cpu_info().describe()}" if precision.device_type == "cpu" else precision.device_type


def describe_precision(key: str, mode: str, precision: Precision) -> str:
    """One log line on what ``mode`` resolved to and why, e.g. ``train.amp: auto -> fp32 (cpu:
    AMD EPYC (AVX2, no native bf16))``."""
    return f"{key}: {mode} -> {precision.name} ({_where(precision)})"


def precision_tags(key: str, precision: Precision) -> dict[str, str]:
    """MLflow tags that record what ``key`` resolved to and on which hardware."""
    return {f"{key}.resolved": precision.name, f"{key}.hardware": _where(precision)}
