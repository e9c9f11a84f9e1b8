"""LoRA adapters on a backbone."""

from __future__ import annotations

from torch import nn

from pipeline.config import LoraConfig


def apply_lora_config(module: nn.Module, cfg: LoraConfig) -> list[str]:
    if cfg.rank == 0:
        return []
    raise NotImplementedError
