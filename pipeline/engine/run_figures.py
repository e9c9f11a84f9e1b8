"""Figures of a scored set for its MLflow run: the top-1 precision-recall curve, and the frames
by target present / absent × what the top-1 answer did (hit, wrong place, nothing)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: stages run on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: Columns of the outcome figure and the outcomes (:func:`pipeline.metrics.topone.outcomes`) in
#: them, per row: target present, target absent.
OUTCOME_COLUMNS = ("answer hits\nthe target", "answer is\nwrong", "no\nanswer")
_OUTCOMES = {"target present": ("TP", "miss", "FN"), "target absent": (None, "FP", "TN")}


def plot_pr_curve(pr: pd.DataFrame, score_threshold: float | None, title: str, out: Path) -> Path:
    """Precision against recall as the score threshold sweeps (``pr``: ``threshold, precision,
    recall``), the point at ``score_threshold`` marked; written to ``out`` (PNG)."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot(pr["recall"], pr["precision"], marker=".", linewidth=1.5)
    if score_threshold is not None and len(pr):
        at = pr.iloc[(pr["threshold"] - score_threshold).abs().argsort()[:1]]
        ax.plot(at["recall"], at["precision"], "o", color="C3", label=f"score threshold {score_threshold:.3g}")
        ax.legend(loc="lower left")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall (top-1 hits / frames with the target)")
    ax.set_ylabel("precision (top-1 hits / answers)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_outcomes(outcome: pd.Series, title: str, out: Path) -> Path:
    """Frames counted by target present / absent (rows) and what the top-1 answer above the score
    threshold did (columns: hit at the IoU threshold, wrong (elsewhere, or any answer without
    the target), no answer), each cell
    with its share of the row; ``outcome``: one of TP, miss, FN, FP, TN per frame. Written to ``out``."""
    counts = outcome.value_counts()
    grid = np.array([[counts.get(o, 0) if o else np.nan for o in row] for row in _OUTCOMES.values()], dtype=float)
    totals = np.nansum(grid, axis=1, keepdims=True)
    share = np.divide(grid, totals, out=np.zeros_like(grid), where=totals > 0)
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    ax.imshow(np.where(np.isnan(grid), np.nan, share), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (r, c), n in np.ndenumerate(grid):
        text = "—" if np.isnan(n) else f"{int(n)}\n{share[r, c]:.0%}"
        ax.text(c, r, text, ha="center", va="center", color="white" if share[r, c] > 0.6 else "black")
    ax.set_xticks(range(len(OUTCOME_COLUMNS)), OUTCOME_COLUMNS)
    ax.set_yticks(range(len(_OUTCOMES)), [f"{name} ({int(t)})" for name, t in zip(_OUTCOMES, totals[:, 0])])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
