"""Pictures people would rather look at than read: curves, samples, confusion matrices.

matplotlib with the Agg backend (no display needed); every picture is written atomically.
Plots only draw what they are given: predicting is the caller's (`edgeseg.train.evaluate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from edgeseg.fileio import atomic_path
from edgeseg.runtime.overlay import colorize
from edgeseg.spec import ModelSpec


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def training_curves(rows: list[dict[str, float]], path: Path, monitor: str) -> Path:
    """Loss and the monitored metric per epoch, training and validation side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [int(r.get("epoch", i)) + 1 for i, r in enumerate(rows)]
    metric = monitor.removeprefix("val_")
    for ax, key in zip(axes, ("loss", metric)):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [r.get(prefix + key, np.nan) for r in rows]
            ax.plot(epochs, values, style, marker="o", label=(prefix + key) or key)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def prediction_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    spec: ModelSpec,
    path: Path,
    titles: Sequence[str] | None = None,
) -> Path:
    """Rows of image | truth | prediction (unlabelled pixels black)."""
    plt = _pyplot()
    rows = max(1, len(images))
    fig, axes = plt.subplots(rows, 3, figsize=(9, 3 * rows), squeeze=False)
    for row, (image, truth, pred) in enumerate(zip(images, truths, predictions)):
        for col, (picture, name) in enumerate(
            (
                (image, "image"),
                (colorize(truth, spec.palette), "truth"),
                (colorize(pred, spec.palette), "prediction"),
            )
        ):
            ax = axes[row][col]
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            label = name if not titles else f"{name}  {titles[row]}" if col == 0 else name
            ax.set_title(label, fontsize=9)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=np.asarray(colour) / 255.0) for colour in spec.palette
    ]
    fig.legend(handles, spec.class_names, loc="lower center", ncol=min(6, len(handles)), fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, path)


def confusion_matrix_picture(cm: np.ndarray, class_names: Sequence[str], path: Path) -> Path:
    """Row-normalised confusion matrix (rows: truth, columns: prediction) with percentages."""
    plt = _pyplot()
    totals = cm.sum(axis=1, keepdims=True)
    normalised = np.divide(cm, totals, out=np.zeros(cm.shape, dtype=np.float64), where=totals > 0)
    size = max(4.0, 0.6 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    for i in ticks:
        for j in ticks:
            if totals[i, 0]:
                value = normalised[i, j]
                ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if value > 0.5 else "black")
    ax.set_title("confusion matrix (% of each true class)")
    fig.tight_layout()
    return _save(fig, path)
