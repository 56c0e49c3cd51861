"""Chapter 3, weight initialisation: N(0, 1) vs N(0, 1/n_in) weights.

The book: with N(0, 1) weights the hidden neurons start saturated and learn slowly; the
scaled initialisation reaches the same final accuracy ("somewhat over 96 percent" for both
after 30 epochs) much sooner.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from pipeline.book.page import Page, percent
from pipeline.book.runner import BookContext
from pipeline.estimators import MLPClassifier
from pipeline.reports import save_figure

ESTIMATOR = MLPClassifier  # what each row trains (its parameters are checked first)


def run(ctx: BookContext) -> Page:
    results = []
    seed = ctx.seeds()[0]
    for row in ctx.book.rows:
        params = ctx.row_params(row)
        estimator = MLPClassifier(**params, random_state=seed)
        results.append((row, ctx.fit_row(row.name, estimator, seed, settings=params)))
    rows = []
    for row, r in results:
        val = [h["val_accuracy"] for h in r.history]
        rows.append(
            [
                row.name,
                f"~{percent(row.book, 0)} after 30 epochs",
                percent(val[0]),
                percent(val[min(4, len(val) - 1)]),
                percent(val[-1]),
                percent(r.metrics["test_accuracy"]),
                f"{r.seconds:.0f} s",
            ]
        )
    (_, large), (_, scaled) = results[0], results[1]
    first = (large.history[0]["val_accuracy"], scaled.history[0]["val_accuracy"])
    pattern = "the book's pattern" if first[1] > first[0] else "NOT the book's pattern"
    reading = (
        f"After one epoch N(0,1/n_in) is at {percent(first[1])} vs {percent(first[0])} for "
        f"N(0,1) ({pattern}: a faster start); after the last epoch "
        f"{percent(scaled.history[-1]['val_accuracy'])} vs "
        f"{percent(large.history[-1]['val_accuracy'])}."
    )
    return Page(
        **ctx.page_heading(),
        settings=ctx.settings_line(),
        header=[
            "initialisation",
            "book",
            "ours: validation, epoch 1",
            "epoch 5",
            "last epoch",
            "ours: test",
            "time",
        ],
        rows=rows,
        figure=plot(ctx, results),
        reading=reading,
        wall_seconds=0.0,
    )


def plot(ctx: BookContext, results):
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for row, r in results:
        ax.plot(
            [h["epoch"] for h in r.history],
            [100 * h["val_accuracy"] for h in r.history],
            "o-",
            ms=3,
            label=row.name,
        )
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)", title="Weight initialisation")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, f"{ctx.book.out_dir}/{ctx.book.name}.png")
