"""The top-1 precision-recall curve of a scored set as a figure for its MLflow run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: stages run on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


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
