"""Plots (matplotlib) and the Markdown evaluation report.

Every function takes plain data (lists, arrays, dicts) and a path, so the report can be
rebuilt from the files the stages wrote. Figures are written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from pipeline.artifacts import atomic_path, write_text  # noqa: E402
from pipeline.tracking import mask_secrets  # noqa: E402


def save_figure(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_learning_curves(history: list[dict], path: str | os.PathLike) -> Path:
    """Training and validation loss, validation accuracy and eta, per epoch."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], "o-", label="training")
    if any(row.get("val_loss") is not None for row in history):
        ax_loss.plot(epochs, [row.get("val_loss") for row in history], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="cost", title="Cost per epoch")
    ax_loss.legend()
    if any(row.get("val_accuracy") is not None for row in history):
        ax_acc.plot(epochs, [100 * (row.get("val_accuracy") or np.nan) for row in history], "o-")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Validation accuracy")
    etas = [row["learning_rate"] for row in history]
    if len(set(etas)) > 1:
        twin = ax_acc.twinx()
        twin.step(epochs, etas, where="post", color="grey", alpha=0.6)
        twin.set_ylabel("eta", color="grey")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_gradient_norms(history: list[dict], path: str | os.PathLike) -> Path | None:
    """Per-layer ||dC/dW|| per epoch on a log scale (chapter 5's vanishing gradients)."""
    layers = list(dict.fromkeys(k for row in history for k in row if k.startswith("grad_norm_")))
    if not layers:
        return None
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key in layers:
        ax.semilogy(epochs, [row.get(key, np.nan) for row in history], "o-", label=key[10:])
    ax.set(xlabel="epoch", ylabel="||dC/dW||", title="Gradient norm per layer")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def plot_confusion_matrix(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: list,
    path: str | os.PathLike,
    display_labels: list[str] | None = None,
) -> Path:
    """The test set's confusion matrix; the axes show ``display_labels`` (e.g. the
    dataset's class names) in place of ``labels`` when given."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=labels,
        display_labels=display_labels,
        ax=ax,
        colorbar=False,
        cmap="Blues",
        xticks_rotation="horizontal" if display_labels is None else "vertical",
    )
    ax.set_title("Confusion matrix (test set)")
    return save_figure(fig, path)


LABEL_ROWS = 7  # pixel rows above each cell of the misclassified grid, for its label


def plot_misclassified(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    path: str | os.PathLike,
    limit: int = 36,
) -> Path | None:
    """A grid of misclassified images labelled "true -> predicted".

    The grid is one image (the cells tiled with NumPy, a band above each for its label) in
    one axes, labelled by text: one axes per image made this plot cost seconds."""
    wrong = np.flatnonzero(y_true != y_pred)[:limit]
    if len(wrong) == 0:
        return None
    cols = math.ceil(math.sqrt(len(wrong)))
    rows = math.ceil(len(wrong) / cols)
    mosaic, (cell_h, cell_w) = tile(images[wrong], rows, cols, top=LABEL_ROWS, left=2)
    width = 1.3 * cols
    fig, ax = plt.subplots(figsize=(width, width * mosaic.shape[0] / mosaic.shape[1] + 0.4))
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    for k, i in enumerate(wrong):
        row, col = divmod(k, cols)
        ax.text((col + 0.5) * cell_w, row * cell_h + LABEL_ROWS - 1.5,
                f"{y_true[i]} -> {y_pred[i]}", ha="center", va="bottom", fontsize=8,
                color="firebrick")  # fmt: skip
    fig.suptitle(f"Misclassified test images (first {len(wrong)})", fontsize=10)
    return save_figure(fig, path)


def tile(
    images: np.ndarray, rows: int, cols: int, top: int = 0, left: int = 0
) -> tuple[np.ndarray, tuple[int, int]]:
    """``images`` (n, h, w) laid out row by row in cells of (top + h, left + w) pixels, the
    image at the cell's bottom right, the rest NaN (drawn as background); returns the
    canvas, of shape (rows (top + h), cols (left + w)), and the cell's (height, width)."""
    n, height, width = images.shape
    cell_h, cell_w = top + height, left + width
    canvas = np.full((rows * cell_h, cols * cell_w), np.nan)
    for k in range(n):
        row, col = divmod(k, cols)
        y, x = row * cell_h + top, col * cell_w + left
        canvas[y : y + height, x : x + width] = images[k]
    return canvas, (cell_h, cell_w)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_evaluation_report(
    path: str | os.PathLike,
    metrics: dict,
    per_class: dict[str, dict[str, float]],
    model_summary: dict,
    plots: dict[str, Path | None],
) -> Path:
    """``reports/evaluation.md``: headline figures, per-class table, the plots inline; any
    password in a URL among the values is masked."""
    path = Path(path)
    rel = {k: os.path.relpath(v, path.parent) for k, v in plots.items() if v is not None}
    parts = [
        "# Evaluation report",
        "",
        f"**Test accuracy: {100 * metrics['test_accuracy']:.2f}%** on "
        f"{metrics['n_test']} test images "
        f"(model `{model_summary['name']}`, dataset `{model_summary['dataset']}`).",
        "",
        _table(
            ["metric", "value"],
            [
                ["test accuracy", f"{metrics['test_accuracy']:.4f}"],
                ["test cost", f"{metrics['test_loss']:.4f}"],
                ["macro F1", f"{metrics['macro_f1']:.4f}"],
                ["best validation accuracy", _fmt(metrics.get("best_val_accuracy"))],
                ["epochs trained", metrics["epochs"]],
                ["training images (augmented)", metrics["n_train"]],
            ],
        ),
        "",
        "## Model",
        "",
        _table(["parameter", "value"], [[k, f"`{_value(v)}`"] for k, v in model_summary.items()]),
        "",
    ]
    if "learning_curves" in rel:
        parts += ["## Learning curves", "", f"![learning curves]({rel['learning_curves']})", ""]
    if "gradient_norms" in rel:
        parts += [
            "## Gradient norms per layer",
            "",
            "The norm of each layer's weight gradient per epoch, measured on 1,000 training "
            "images (chapter 5: in deep sigmoid networks the early layers learn slowest).",
            "",
            f"![gradient norms]({rel['gradient_norms']})",
            "",
        ]
    parts += [
        "## Per-class precision, recall and F1 (test set)",
        "",
        _table(
            ["class", "precision", "recall", "F1", "support"],
            [
                [
                    label,
                    f"{row['precision']:.3f}",
                    f"{row['recall']:.3f}",
                    f"{row['f1-score']:.3f}",
                    int(row["support"]),
                ]
                for label, row in per_class.items()
            ],
        ),
        "",
    ]
    if "confusion_matrix" in rel:
        parts += ["## Confusion matrix", "", f"![confusion matrix]({rel['confusion_matrix']})", ""]
    if "misclassified" in rel:
        parts += ["## Misclassified images", "", f"![misclassified]({rel['misclassified']})", ""]
    write_text(path, mask_secrets("\n".join(parts)))
    return path


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
