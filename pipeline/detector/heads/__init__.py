"""Heads: from the matched features to scored boxes, each with its own loss and decoding.

A head is a :class:`~.base.Head` built as ``builder(cfg, channels=C, levels=L, similarities=S,
stride=s)``: ``C`` channels per neck level, ``L`` levels, ``S`` similarity maps.
"""
