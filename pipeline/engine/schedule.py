"""Per-step learning-rate schedule: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """LR multiplier at ``step`` (0-based): 0->1 linearly over warmup, then cosine 1->min_ratio.

    >>> warmup_cosine(0, 100, 10, 0.0), warmup_cosine(10, 100, 10, 0.0), warmup_cosine(100, 100, 10, 0.0)
    (0.1, 1.0, 0.0)
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, lr: float, min_lr: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping once per optimiser step; every param group keeps its own base LR ratio."""
    min_ratio = min_lr / lr if lr > 0 else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps, min_ratio)
    )
