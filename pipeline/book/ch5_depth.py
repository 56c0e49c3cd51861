"""Chapter 5, depth and unstable gradients.

The book's table: [784,30,10] 96.48%, [784,30,30,10] 96.90%, [784,30,30,30,10] 96.57%,
[784,30,30,30,30,10] 96.53%: a second hidden layer helps, more do not. Its figure: the
learning speed of hidden layer l, ||delta^l|| = ||dC/db^l|| over 1,000 training images, is
smaller the earlier the layer (about 100x between the first and the fourth hidden layer of
the deepest network): the vanishing gradient.

Each depth runs with every seed of ``book.seeds`` (one MLflow run each); the page gives the
mean and standard deviation over seeds.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from pipeline.book.page import Page, percent
from pipeline.book.runner import BookContext, RowResult
from pipeline.estimators import MLPClassifier
from pipeline.reports import save_figure

ESTIMATOR = MLPClassifier  # what each row trains (its parameters are checked first)


def delta_norms(estimator):
    """An epoch-metrics function: ||delta^l|| = ||dC/db^l|| of each hidden layer.

    With ``track_gradient_norms`` the estimator backpropagates 1,000 training images after
    every epoch; the bias gradients it leaves in the layers are the book's delta^l averaged
    over those images (BP3).
    """

    def measure(info) -> dict[str, float]:
        layers = [layer for layer in estimator.network_.layers if "b" in layer.grads]
        return {
            f"delta_norm_hidden{i}": float(np.linalg.norm(layer.grads["b"]))
            for i, layer in enumerate(layers[:-1], start=1)
        }

    return measure


def run(ctx: BookContext) -> Page:
    results: dict[str, list[RowResult]] = {}
    rows = list(ctx.book.rows)
    for row in rows:
        params = ctx.row_params(row)
        for seed in ctx.seeds():
            estimator = MLPClassifier(**params, random_state=seed)
            result = ctx.fit_row(
                row.name, estimator, seed, epoch_metrics=[delta_norms(estimator)], settings=params
            )
            results.setdefault(row.name, []).append(result)
    table_rows = [table_row(row, results[row.name]) for row in rows]
    return Page(
        **ctx.page_heading(),
        settings=ctx.settings_line() + f"; seeds {ctx.seeds()} (mean ± standard deviation)",
        header=[
            "network",
            "book (validation)",
            "ours: best validation",
            "ours: test",
            "‖delta^1‖ / ‖delta^last‖, epoch 1",
            "time (all seeds)",
        ],
        rows=table_rows,
        figure=plot(ctx, rows, results),
        reading=reading(rows, results),
        wall_seconds=0.0,
        notes=[
            "||delta^l|| is the norm of the bias gradient dC/db^l of hidden layer l, measured on "
            "the first 1,000 training images after each epoch (the book measures it the same "
            "way). The ratio column divides the first hidden layer's by the last hidden "
            "layer's, at the end of epoch 1.",
            "MLflow also holds ||dC/dW|| per layer per epoch (metrics grad_norm_*).",
            f"Mini-batches per epoch: {steps_per_epoch(ctx):,} here, 5,000 in the book (50,000 "
            "images): the deeper sigmoid networks spend more of a short run in the slow start "
            "the right panel shows, so depth costs more here than in the book.",
        ],
    )


def steps_per_epoch(ctx: BookContext) -> int:
    return -(-len(ctx.train.y) // int(ctx.book.network.batch_size))


def accuracies(results: list[RowResult], key: str) -> np.ndarray:
    return np.array([r.metrics[key] for r in results])


def mean_spread(values: np.ndarray) -> str:
    return f"{100 * values.mean():.2f} ± {100 * values.std():.2f}%"


def speed_ratio(results: list[RowResult]) -> float | None:
    """Mean over seeds of ||delta^1|| / ||delta^last hidden|| after epoch 1."""
    ratios = []
    for r in results:
        norms = [v for k, v in sorted(r.history[0].items()) if k.startswith("delta_norm_hidden")]
        if len(norms) > 1:
            ratios.append(norms[0] / norms[-1])
    return float(np.mean(ratios)) if ratios else None


def table_row(row, results: list[RowResult]) -> list:
    ratio = speed_ratio(results)
    return [
        row.name,
        percent(row.book),
        mean_spread(accuracies(results, "best_val_accuracy")),
        mean_spread(accuracies(results, "test_accuracy")),
        "—" if ratio is None else f"{ratio:.3f}",
        f"{sum(r.seconds for r in results):.0f} s",
    ]


def reading(rows, results) -> str:
    means = {row.name: accuracies(results[row.name], "best_val_accuracy").mean() for row in rows}
    best = max(means, key=means.get)
    book_best = max(rows, key=lambda row: row.book).name
    same = "as in the book" if best == book_best else f"the book's best is {book_best}"
    deepest = rows[-1].name
    ratio = speed_ratio(results[deepest])
    if not ratio:
        speed = ""
    elif ratio < 0.5:
        speed = (
            f"; in {deepest} the first hidden layer learns {1 / ratio:.0f}x slower than the "
            "last after epoch 1 (the vanishing gradient)"
        )
    else:
        speed = (
            f"; in {deepest} the first hidden layer learns about as fast as the last after "
            f"epoch 1 (ratio {ratio:.2f}): by then the gradient no longer vanishes here"
        )
    return f"Best depth on validation: {best} ({100 * means[best]:.2f}% mean), {same}{speed}."


def plot(ctx: BookContext, rows, results):
    fig, (ax_acc, ax_speed) = plt.subplots(1, 2, figsize=(12, 4))
    depths = np.arange(1, len(rows) + 1)
    vals = [accuracies(results[row.name], "best_val_accuracy") for row in rows]
    ax_acc.errorbar(
        depths,
        [100 * v.mean() for v in vals],
        yerr=[100 * v.std() for v in vals],
        fmt="o-",
        capsize=4,
        label=f"ours (mean ± sd, {len(ctx.seeds())} seeds)",
    )
    ax_acc.plot(depths, [100 * row.book for row in rows], "s--", label="book")
    ax_acc.set(
        xlabel="hidden layers",
        ylabel="validation accuracy (%)",
        xticks=depths,
        title="Accuracy by depth",
    )
    ax_acc.legend()
    deepest = results[rows[-1].name]
    keys = sorted(k for k in deepest[0].history[0] if k.startswith("delta_norm_hidden"))
    epochs = [h["epoch"] for h in deepest[0].history]
    for key in keys:
        mean = np.mean([[h[key] for h in r.history] for r in deepest], axis=0)
        ax_speed.semilogy(epochs, mean, "o-", ms=3, label=f"hidden layer {key[17:]}")
    ax_speed.set(xlabel="epoch", ylabel="||delta^l||", title=f"Speed of learning, {rows[-1].name}")
    ax_speed.legend(fontsize=8)
    for ax in (ax_acc, ax_speed):
        ax.grid(alpha=0.3, which="both")
    return save_figure(fig, f"{ctx.book.out_dir}/{ctx.book.name}.png")
