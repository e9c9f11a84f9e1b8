"""Training-curve figure (loss terms, learning rate, validation AP50 and FP rate) from the per-epoch history."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: stages run on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def plot_training_curves(history: pd.DataFrame, out: Path) -> Path:
    """Three panels over epochs: training loss terms, learning rate, validation AP/success."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    loss_cols = [c for c in history.columns if c.startswith("train_") and c not in ("train_lr", "train_images_per_s")]
    for col in loss_cols:
        axes[0].plot(history["epoch"], history[col], marker="o", label=col.removeprefix("train_"))
    axes[0].set_yscale("log")
    axes[0].set_title("training loss")
    axes[1].plot(history["epoch"], history.get("train_lr", pd.Series(dtype=float)), marker="o")
    axes[1].set_title("learning rate (end of epoch)")
    for col in ("val_AP50", "val_AP", "val_success", "val_fp_rate", "val_real_AP50", "val_real_success"):
        if col in history:
            # Only validation epochs have values: plot those points, joined.
            rows = history[["epoch", col]].dropna()
            axes[2].plot(rows["epoch"], rows[col], marker="o", linestyle="--" if "_real_" in col else "-",
                         label=col.removeprefix("val_").replace("real_", "real photos ")
                         .replace("fp_rate", "FP rate (no target)"))
    axes[2].set_ylim(0, 1)
    axes[2].set_title("validation (unseen objects; dashed: real photos)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
