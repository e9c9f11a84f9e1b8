"""``model.refine.type: none``: the head's scores are final."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import PartConfig

from ..registry import REFINERS

__all__ = ["NoRefinerConfig"]


@dataclass(frozen=True)
class NoRefinerConfig(PartConfig):
    """``model.refine`` of ``type: none``."""

    type: str = "none"


@REFINERS.register("none", NoRefinerConfig)
def build_no_refiner(cfg: NoRefinerConfig, channels: int, stride: int, similarities: int) -> None:
    return None
