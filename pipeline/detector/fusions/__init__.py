"""Fusions of the features of 1..K reference photos (templates) into one map per level.

A fusion is built as ``builder(cfg, channels=C)`` and maps ``features [B, K, C, h, w]`` and
``mask [B, K]`` bool (True = a real template, ``None`` = all real) to ``[B, C, h, w]``.
"""
