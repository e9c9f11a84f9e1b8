"""What this CPU runs natively: bf16 matrix instructions decide whether bf16 autocast pays off."""

from __future__ import annotations

import functools
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch

#: /proc/cpuinfo flags of instructions that compute bf16 dot products in hardware. Without them
#: oneDNN emulates bf16 by converting to fp32 and back, about 14x slower than plain fp32.
X86_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
ARM_BF16_FLAGS = frozenset({"bf16"})  # Armv8.6 BF16 (Graviton3+, Neoverse V1/N2, Apple M2+)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name, the vector ISA torch dispatches to, and its bf16 support."""

    model: str
    isa: str  # torch.backends.cpu.get_cpu_capability(), e.g. AVX2, AVX512, SVE256, DEFAULT
    native_bf16: bool
    bf16_flags: tuple[str, ...]  # the flags that showed it, empty when none

    def describe(self) -> str:
        """One line for logs and benchmark tables, e.g. ``AMD EPYC (AVX2, no native bf16)``."""
        bf16 = f"native bf16: {'+'.join(self.bf16_flags)}" if self.native_bf16 else "no native bf16"
        return f"{self.model} ({self.isa}, {bf16})"


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The model name and the feature flags of the first processor in a ``/proc/cpuinfo`` text.

    x86 lists them under ``flags``, Arm under ``Features``; Arm has no ``model name`` line on
    many kernels, so the model falls back to ``unknown``.
    """
    model, flags = "unknown", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model") and model == "unknown":
            model = value.strip() or model
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return model, flags


def bf16_flags(flags: frozenset[str], machine: str) -> tuple[str, ...]:
    """The native-bf16 flags among ``flags`` for an ``machine`` (``platform.machine()``)."""
    wanted = ARM_BF16_FLAGS if machine.lower() in ("aarch64", "arm64") else X86_BF16_FLAGS
    return tuple(sorted(flags & wanted))


def _darwin_bf16() -> bool:
    # Apple silicon reports its Arm features through sysctl, not /proc.
    try:
        out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True,
                             timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == "1"


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's :class:`CpuInfo` (read once per process)."""
    machine = platform.machine()
    isa = torch.backends.cpu.get_cpu_capability()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model, flags = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
        found = bf16_flags(flags, machine)
        return CpuInfo(model, isa, bool(found), found)
    if platform.system() == "Darwin" and machine == "arm64":
        native = _darwin_bf16()
        return CpuInfo(platform.processor() or "Apple silicon", isa, native, ("FEAT_BF16",) if native else ())
    return CpuInfo(platform.processor() or "unknown", isa, False, ())
