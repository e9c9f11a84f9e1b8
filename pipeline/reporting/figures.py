"""The report's PNG figures: training curves, precision-recall curves, the reliability diagram, the
evaluate gallery.

Byte-identical on the same inputs: fixed size and dpi, and no "Software" (matplotlib version)
entry in the PNG metadata, so a figure changes in git only when its data does.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: stages run on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pipeline.reporting.inputs import ReportInputs  # noqa: E402

DPI = 100
TRAIN_CURVE = "train_curve.png"
PR_CURVE = "pr_curve.png"
RELIABILITY = "reliability.png"
GALLERY = "gallery.png"
# train_curve.csv columns that are not loss terms (after dropping the "train_" prefix)
NOT_LOSS = {"epoch", "lr", "images_per_s", "wall_minutes"}
#: validation columns drawn, with their labels: the FP rate is the share of frames without the target that get an answer
VAL_METRICS = {"val_AP50": "AP50", "val_AP": "AP", "val_success": "success",
               "val_fp_rate": "FP rate (frames without the target)"}


@dataclass(frozen=True)
class Figure:
    """A figure of the report: its file name in the figures folder, or None and why it is missing."""

    title: str
    filename: str | None
    missing: str | None = None


def save_png(fig: plt.Figure, out: Path) -> Path:
    """Write ``fig`` as a reproducible PNG and close it."""
    try:
        fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    finally:
        plt.close(fig)
    return out


def plot_train_curve(curve: pd.DataFrame, out: Path) -> Path:
    """Three panels over epochs: loss terms (log scale), learning rate, validation metrics."""
    # train.py writes train_<term>; accept bare names (loss, focal, ...) too
    data = curve.rename(columns=lambda c: c.removeprefix("train_"))
    epoch = data["epoch"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    losses = [c for c in data.columns if c not in NOT_LOSS and not c.startswith("val_")]
    for col in losses:
        values = pd.to_numeric(data[col], errors="coerce")
        axes[0].plot(epoch, values.where(values > 0), marker="o", label=col)  # log scale: positives only
    if losses:
        axes[0].set_yscale("log")
    axes[0].set_title("training loss")
    if "lr" in data:
        axes[1].plot(epoch, data["lr"], marker="o")
    axes[1].set_title("learning rate (end of epoch)")
    for col, label in VAL_METRICS.items():
        if col in data:
            values = pd.to_numeric(data[col], errors="coerce")
            # validation rows only (NaN on other epochs); -1 is pycocotools' "undefined"
            valid = values.notna() & (values >= 0)
            axes[2].plot(epoch[valid], values[valid], marker="o", label=label,
                         linestyle="--" if col == "val_fp_rate" else "-")
    axes[2].set_ylim(0, 1)
    axes[2].set_title("validation (unseen objects)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, out)


#: line style per PR curve label: the baseline's short curve must not hide under the model's
PR_STYLES = {"model": dict(color="tab:blue", linestyle="-", marker="."),
             "model, real photos": dict(color="tab:green", linestyle="--", marker="."),
             "baseline": dict(color="tab:orange", linestyle="-", marker="s", markersize=4, linewidth=2)}


def plot_pr_curves(curves: Sequence[tuple[str, pd.DataFrame, tuple[float, float] | None]], out: Path) -> Path:
    """Top-1 precision against recall, one line per (label, pr_curve.csv, operating point) on one
    plot; the operating point (recall, precision at the score threshold in use) as a star."""
    fig, ax = plt.subplots(figsize=(6, 5))
    for label, curve, point in curves:
        ordered = curve.sort_values(["threshold", "recall", "precision"], kind="stable")
        style = PR_STYLES.get(label, {})
        ax.plot(ordered["recall"], ordered["precision"], label=label, **style)
        if point is not None:
            ax.plot([point[0]], [point[1]], marker="*", markersize=14, color=style.get("color"),
                    markeredgecolor="black", linestyle="none")
    if any(point is not None for _, _, point in curves):
        ax.plot([], [], marker="*", markersize=10, color="white", markeredgecolor="black", linestyle="none",
                label="at the score threshold in use")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall (top-1 per frame)")
    ax.grid(alpha=0.3)
    if curves:  # below the axes: inside, it covered the baseline's curve
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return save_png(fig, out)


def operating_point(metrics: dict) -> tuple[float, float] | None:
    """(recall, precision) of the top-1 answer at the score threshold in use, from metrics.json."""
    recall, precision = metrics.get("recall"), metrics.get("precision")
    if recall is None or precision is None:
        return None
    return float(recall), float(precision)


def plot_reliability(tables: Sequence[tuple[str, pd.DataFrame, float | None]], out: Path) -> Path:
    """Reliability diagram: per score bin the share of frames whose top-1 box is correct against
    the bin's mean top-1 score, one line per (label, reliability.csv, ECE); the diagonal is a
    perfectly calibrated score. Empty bins are left out."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for label, rel, ece in tables:
        rows = rel[pd.to_numeric(rel["frames"], errors="coerce") > 0]
        name = label if ece is None else f"{label} (ECE {ece:.3f})"
        ax.plot(pd.to_numeric(rows["mean_score"]), pd.to_numeric(rows["accuracy"]), marker="o", label=name)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean top-1 score in the bin")
    ax.set_ylabel("share of frames with a correct top-1 box")
    ax.set_title("reliability (10 score bins)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return save_png(fig, out)


def write_figures(inputs: ReportInputs, folder: Path) -> list[Figure]:
    """Draw or copy every figure into ``folder``; the list names each, in the report's order."""
    figures = []
    if inputs.train_curve is not None:
        plot_train_curve(inputs.train_curve, folder / TRAIN_CURVE)
        figures.append(Figure("Training curves", TRAIN_CURVE))
    else:
        figures.append(Figure("Training curves", None, inputs.notes["train_curve"]))

    scored = [("model", inputs.model), ("model, real photos", inputs.real), ("baseline", inputs.baseline)]
    drawn = [(label, s.pr_curve, operating_point(s.metrics)) for label, s in scored
             if s is not None and s.pr_curve is not None and not s.pr_curve.empty]
    if inputs.model.pr_curve is not None and drawn:
        plot_pr_curves(drawn, folder / PR_CURVE)
        figures.append(Figure("Precision-recall", PR_CURVE))
    else:
        figures.append(Figure("Precision-recall", None, inputs.notes.get("pr_curve", "No precision-recall curve.")))

    tables = [("model", inputs.model)]
    if inputs.real is not None:
        tables.append(("model, real photos", inputs.real))
    if inputs.baseline is not None:
        tables.append(("baseline", inputs.baseline))
    drawn_rel = [(label, s.reliability, s.metrics.get("ece")) for label, s in tables
                 if s.reliability is not None and not s.reliability.empty]
    if inputs.model.reliability is not None and drawn_rel:
        plot_reliability(drawn_rel, folder / RELIABILITY)
        figures.append(Figure("Reliability of the top-1 score", RELIABILITY))
    else:
        figures.append(Figure("Reliability of the top-1 score", None,
                              inputs.notes.get("reliability", "No reliability table.")))

    if inputs.model.gallery is not None:
        shutil.copyfile(inputs.model.gallery, folder / GALLERY)
        figures.append(Figure("Gallery (best and worst validation frames)", GALLERY))
    else:
        figures.append(Figure("Gallery (best and worst validation frames)", None, inputs.notes["gallery"]))
    return figures
