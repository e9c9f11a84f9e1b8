"""Whether the model is being exported, so parts can take their export-safe form."""

from __future__ import annotations

import torch

__all__ = ["exporting"]


def exporting() -> bool:
    """True inside ``torch.export`` (the dynamo ONNX exporter) or the TorchScript ONNX exporter."""
    return bool(torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export())
