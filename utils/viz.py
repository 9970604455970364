"""Figures. Every plot function returns its figure; `save()` writes it atomically under outputs/figures/."""
from __future__ import annotations

import textwrap

import matplotlib

import koreanize_matplotlib  # noqa: F401  (ships NanumGothic, so Korean labels render offline)
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pathlib import Path
from .io import save_figure

matplotlib.rcParams.update({"axes.unicode_minus": False, "figure.dpi": 90, "axes.grid": True,
                            "grid.alpha": 0.3})
LEVEL_COLORS = plt.get_cmap("tab10")


def save(fig, name: str, run_dir):
    """Write `fig` as <run folder>/figures/<name>.png and return the path."""
    return save_figure(fig, Path(run_dir) / "figures" / f"{name}.png")


def plot_level_counts(train: pd.DataFrame, taxonomy) -> plt.Figure:
    """cat1 and cat2 sizes side by side; cat2 bars coloured by their cat1."""
    cat1_of = dict(zip(taxonomy.table["cat2"], taxonomy.table["cat1"]))
    color_of = {c: LEVEL_COLORS(i) for i, c in enumerate(taxonomy.cat1)}
    fig, axes = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [1, 1.6]})
    c1 = train["cat1"].value_counts().reindex(taxonomy.cat1, fill_value=0).sort_values()
    axes[0].barh(c1.index, c1.values, color=[color_of[c] for c in c1.index])
    axes[0].set_title("cat1 (6 classes)")
    c2 = train["cat2"].value_counts().reindex(taxonomy.cat2, fill_value=0).sort_values()
    axes[1].barh(c2.index, c2.values, color=[color_of[cat1_of[c]] for c in c2.index])
    axes[1].set_title("cat2 (18 classes), coloured by cat1")
    for ax in axes:
        ax.set_xlabel("train rows")
    fig.tight_layout()
    return fig


def plot_cat3_counts(counts: pd.Series, rare_below: int) -> plt.Figure:
    """All cat3 sorted by size on a log axis, with the rare ones (fewer rows than folds) in red."""
    counts = counts.sort_values(ascending=False)
    fig, ax = plt.subplots(figsize=(16, 5))
    colors = ["tab:red" if n < rare_below else "tab:blue" for n in counts.values]
    ax.bar(range(len(counts)), np.maximum(counts.values, 0.8), color=colors)
    ax.set_yscale("log")
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels(counts.index, rotation=90, fontsize=6)
    ax.axhline(rare_below, color="tab:red", ls="--", lw=1, label=f"{rare_below} rows (number of folds)")
    ax.set_ylabel("train rows (log)")
    ax.set_title(f"cat3: {len(counts)} classes, imbalance ratio {counts.max() / max(counts.min(), 1):.0f}:1")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_hierarchy(train: pd.DataFrame, taxonomy) -> plt.Figure:
    """For each cat1, its cat2 as stacked segments, labelled with the number of cat3 they hold."""
    n_cat3 = taxonomy.table.groupby("cat2")["cat3"].nunique()
    counts = train.groupby(["cat1", "cat2"]).size()
    fig, ax = plt.subplots(figsize=(14, 5))
    for y, cat1 in enumerate(taxonomy.cat1):
        left = 0
        children = taxonomy.table.loc[taxonomy.table["cat1"] == cat1, "cat2"].unique()
        for j, cat2 in enumerate(sorted(children, key=lambda c: -counts.get((cat1, c), 0))):
            width = counts.get((cat1, cat2), 0)
            ax.barh(y, width, left=left, color=plt.get_cmap("Pastel1")(j % 9), edgecolor="grey")
            if width > counts.sum() * 0.02:
                ax.text(left + width / 2, y, f"{cat2}\n({n_cat3[cat2]} cat3)", ha="center", va="center", fontsize=7)
            left += width
    ax.set_yticks(range(len(taxonomy.cat1)))
    ax.set_yticklabels(taxonomy.cat1)
    ax.set_xlabel("train rows")
    ax.set_title("Hierarchy: cat1 > cat2 (segments) > number of cat3 in each")
    fig.tight_layout()
    return fig


def plot_histograms(series: dict[str, np.ndarray], xlabel: str, title: str, bins: int = 50) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(9, 4))
    upper = max(np.percentile(v, 99.5) for v in series.values())
    for name, values in series.items():
        ax.hist(np.clip(values, 0, upper), bins=bins, alpha=0.6, label=f"{name} (median {np.median(values):.0f})",
                density=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of rows")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_image_sizes(sizes: pd.DataFrame) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for split, part in sizes.groupby("split"):
        axes[0].scatter(part["width"], part["height"], s=4, alpha=0.4, label=split)
        axes[1].hist(part["width"] / part["height"], bins=40, alpha=0.6, label=split)
    axes[0].set_xlabel("width (px)")
    axes[0].set_ylabel("height (px)")
    axes[0].set_title("image sizes")
    axes[1].set_xlabel("aspect ratio (width / height)")
    axes[1].set_title("aspect ratios")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    return fig


def image_grid(images, titles, ncols: int = 4, size: float = 3.2, overlays=None) -> plt.Figure:
    """A grid of images with wrapped titles; `overlays` (optional) are drawn on top as heatmaps. An image may be
    None (a place without a photo): its cell says so."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.4)))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < n and images[i] is None:
            ax.text(0.5, 0.5, "no photo", ha="center", va="center", color="0.5", transform=ax.transAxes)
            ax.set_title("\n".join(textwrap.wrap(titles[i], 28)), fontsize=8)
        elif i < n:
            ax.imshow(images[i])
            if overlays is not None:
                ax.imshow(overlays[i], cmap="jet", alpha=0.45,
                          extent=(0, images[i].size[0], images[i].size[1], 0))
            ax.set_title("\n".join(textwrap.wrap(titles[i], 28)), fontsize=8)
    fig.tight_layout()
    return fig


def plot_histories(histories: dict[str, list[dict]]) -> plt.Figure:
    """Training curves per model: loss, accuracy and validation weighted F1 of cat3 per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for i, (name, history) in enumerate(histories.items()):
        if not history:
            continue
        h = pd.DataFrame(history)
        color = LEVEL_COLORS(i % 10)
        axes[0].plot(h["epoch"], h["train_loss"], color=color, label=f"{name} train")
        axes[0].plot(h["epoch"], h["val_loss_cat3"], color=color, ls="--", label=f"{name} val (cat3)")
        axes[1].plot(h["epoch"], h["train_accuracy_cat3"], color=color, label=f"{name} train")
        axes[1].plot(h["epoch"], h["val_accuracy_cat3"], color=color, ls="--", label=f"{name} val")
        axes[2].plot(h["epoch"], h["val_weighted_f1_cat3"], color=color, marker="o", ms=3, label=name)
    for ax, title in zip(axes, ["loss (train: weighted sum of levels)", "accuracy cat3", "val weighted F1 cat3"]):
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[2].legend(fontsize=7)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_confusion(matrix: np.ndarray, names: list[str], title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(9, 8))
    im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if matrix[i, j] >= 0.05:
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if matrix[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def plot_scores(table: pd.DataFrame, title: str = "weighted F1 on cat3 (validation)") -> plt.Figure:
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(table) + 1))
    t = table.sort_values("weighted_f1_cat3")
    ax.barh(t["model"], t["weighted_f1_cat3"], color="tab:blue")
    for y, v in enumerate(t["weighted_f1_cat3"]):
        ax.text(v + 0.005, y, f"{v:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.05)
    ax.set_title(title)
    fig.tight_layout()
    return fig
