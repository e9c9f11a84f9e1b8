"""Backbones: ``builder(cfg, levels=...)`` -> a module with ``forward(x [B, 3, H, W]) -> list of
maps``, and ``channels``, ``strides`` (of those maps), ``mean``, ``std`` (input normalisation of its
weights) and ``freeze_through(level)``. A CNN returns the maps of ``levels``; a ViT its one map."""
