"""How a search image matches the references, per cell.

``correlation`` (one per detector, ``model.correlation``): ``builder(cfg)``, then
``forward(search [B, C, H, W], template [B, C, h, w]) -> [B, C, H, W]`` per pyramid level.

``similarity`` (any number, ``model.similarities``): further maps the head reads, each a
:class:`~.base.Similarity` built as ``builder(cfg, stride=...)``.
"""
