"""Necks: ``builder(cfg, in_channels=..., in_strides=..., levels=...)`` -> a module mapping the
backbone's maps to one ``[B, cfg.channels, H / 2**L, W / 2**L]`` map per level ``L`` (finest
first), with ``strides``."""
