"""Parts of the detector chosen by name: one registry per kind, each name with a builder and the
frozen dataclass of that part's own params.yaml keys.

A part registers itself where it is defined::

    @FUSIONS.register("average", FusionConfig)
    def build_average_fusion(cfg: FusionConfig, channels: int) -> AverageFusion: ...

and ``model.fusion.type: average`` then selects it. The builders' wiring arguments (channels,
strides, ...) are the same for every part of a kind; see the kind's package docstring.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Registry", "Entry", "BACKBONES", "NECKS", "FUSIONS", "CORRELATIONS", "SIMILARITIES", "HEADS",
           "REFINERS", "load_parts"]

B = TypeVar("B", bound=Callable[..., Any])

#: The packages whose modules register parts, one per kind.
PART_PACKAGES = ("backbones", "necks", "fusions", "similarity", "heads", "refiners")


@dataclass(frozen=True)
class Entry:
    """One registered part: its name, ``builder(cfg, **wiring) -> nn.Module`` and config class."""

    name: str
    builder: Callable[..., Any]
    config: type


class Registry:
    """Name -> :class:`Entry` for one kind of part (``kind`` names it in errors)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config: type) -> Callable[[B], B]:
        """Decorator registering ``builder`` under ``name`` with its config dataclass."""

        def add(builder: B) -> B:
            if name in self._entries and self._entries[name].builder is not builder:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, builder, config)
            return builder

        return add

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted: whichever part module was imported first, the same order."""
        load_parts()
        return tuple(sorted(self._entries))

    def get(self, name: str) -> Entry:
        """The entry of ``name``; a ``KeyError`` listing the registered names otherwise."""
        load_parts()
        if name not in self._entries:
            raise KeyError(f"{name!r} is not a registered {self.kind} (one of {', '.join(self.names())})")
        return self._entries[name]

    def build(self, cfg: Any, **wiring: Any) -> Any:
        """The part ``cfg.type`` built from ``cfg`` and the wiring arguments of this kind."""
        return self.get(cfg.type).builder(cfg, **wiring)

    def __contains__(self, name: str) -> bool:
        load_parts()
        return name in self._entries


BACKBONES = Registry("backbone")
NECKS = Registry("neck")
FUSIONS = Registry("fusion")
CORRELATIONS = Registry("correlation")
SIMILARITIES = Registry("similarity")
HEADS = Registry("head")
REFINERS = Registry("refiner")

_loaded = False


def load_parts() -> None:
    """Import every module of the part packages, which registers the parts they define."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in PART_PACKAGES:
        pkg = importlib.import_module(f"{__package__}.{package}")
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"{pkg.__name__}.{info.name}")
