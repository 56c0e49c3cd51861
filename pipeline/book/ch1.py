"""Chapter 1: network.py's [784, 30, 10] (and [784, 100, 10]) with the quadratic cost."""

from __future__ import annotations

import matplotlib.pyplot as plt

from pipeline.book.page import Page, percent
from pipeline.book.runner import BookContext, RowResult
from pipeline.estimators import MLPClassifier
from pipeline.reports import save_figure

ESTIMATOR = MLPClassifier  # what each row trains (its parameters are checked first)


def run(ctx: BookContext) -> Page:
    results: list[tuple[dict, RowResult]] = []
    for row in ctx.book.rows:
        params = ctx.row_params(row)
        for seed in ctx.seeds():
            estimator = MLPClassifier(**params, random_state=seed)
            results.append((row, ctx.fit_row(row.name, estimator, seed, settings=params)))
    figure = plot_accuracy(ctx, results)
    table_rows = [
        [
            row.name,
            percent(row.book),
            percent(r.metrics["best_val_accuracy"]),
            percent(r.metrics["test_accuracy"]),
            int(r.metrics["epochs"]),
            f"{r.seconds:.1f} s",
        ]
        for row, r in results
    ]
    best_row, best = max(results, key=lambda item: item[1].metrics["best_val_accuracy"])
    first = results[0][1]
    first_val, best_val = first.metrics["best_val_accuracy"], best.metrics["best_val_accuracy"]
    reading = (
        f"{results[0][0].name} reaches {percent(first_val)} on validation (book: "
        f"{percent(results[0][0].book)} on test); best row on validation: {best_row.name} "
        f"({percent(best_val)}, test {percent(best.metrics['test_accuracy'])})."
    )
    return Page(
        **ctx.page_heading(),
        settings=ctx.settings_line(),
        header=["network", "book (test)", "ours: best validation", "ours: test", "epochs", "time"],
        rows=table_rows,
        figure=figure,
        reading=reading,
        wall_seconds=0.0,
        notes=[
            "The book prints the peak test accuracy over 30 epochs; we choose nothing on "
            "test, so the peak is on validation and test is scored once, after the last epoch."
        ],
    )


def plot_accuracy(ctx: BookContext, results) -> object:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for row, r in results:
        epochs = [h["epoch"] for h in r.history]
        ax.plot(epochs, [100 * h["val_accuracy"] for h in r.history], "o-", ms=3, label=row.name)
        if row.book is not None:
            ax.axhline(100 * row.book, ls=":", color=ax.lines[-1].get_color(), lw=1)
    ax.set(
        xlabel="epoch",
        ylabel="validation accuracy (%)",
        title="Chapter 1 (dotted: the book's figure)",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, f"{ctx.book.out_dir}/{ctx.book.name}.png")
