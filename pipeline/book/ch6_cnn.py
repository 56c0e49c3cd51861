"""Chapter 6, convolutional networks: the book's progression, row by row.

98.78% (one conv layer) -> 99.06% (two) -> 99.23% (ReLU, lambda 0.1) -> 99.37% (training set
expanded with one-pixel shifts) -> 99.60% (two dense layers of 1,000 with dropout) -> 99.67%
(five such networks voting). The ensemble is scikit-learn's ``VotingClassifier`` (hard
voting) over our :class:`~pipeline.estimators.CNNClassifier`.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.ensemble import VotingClassifier
from threadpoolctl import threadpool_limits

from pipeline.book.page import Page, percent
from pipeline.book.runner import BookContext, RowResult, Split
from pipeline.data.transforms import pixel_shifts
from pipeline.estimators import CNNClassifier
from pipeline.reports import save_figure

ESTIMATOR = CNNClassifier  # what each row trains (its parameters are checked first)


def expanded(ctx: BookContext) -> Split:
    """expand_mnist.py: the training images and four copies shifted by ``book.expand.pixels``
    (down, up, right, left), labels repeated."""
    images = ctx.train.X.reshape(-1, *ctx.image_shape)
    shifted = pixel_shifts(images, int(ctx.book.expand.pixels))
    X = np.concatenate([images, shifted]).reshape(len(images) * 5, -1)
    return Split(np.ascontiguousarray(X, dtype=np.float32), np.tile(ctx.train.y, 5))


def fit_ensemble(ctx: BookContext, row, params: dict, train: Split) -> RowResult:
    """``book.ensemble_size`` networks (seeds 0, 1, ...) voting; one MLflow run."""
    size = int(ctx.book.ensemble_size)
    voting = VotingClassifier(
        [(f"cnn{seed}", CNNClassifier(**params, random_state=seed)) for seed in range(size)],
        voting="hard",
    )
    settings = {**params, "ensemble_size": size, "n_train": len(train.y)}
    with ctx.tracked_row(row.name, 0, settings) as tracker:
        started = time.perf_counter()
        with threadpool_limits(limits=int(ctx.book.threads)):
            voting.fit(train.X, train.y)
            seconds = time.perf_counter() - started
            members = [float(m.score(ctx.val.X, ctx.val.y)) for m in voting.estimators_]
            metrics = {
                "final_val_accuracy": float(voting.score(ctx.val.X, ctx.val.y)),
                "best_val_accuracy": float(voting.score(ctx.val.X, ctx.val.y)),
                "test_accuracy": float(voting.score(ctx.test.X, ctx.test.y)),
                "best_member_val_accuracy": max(members),
                "epochs": float(params["epochs"]),
                "train_seconds": round(seconds, 2),
            }
        tracker.log_metrics(metrics)
    return RowResult(row.name, 0, [], metrics, seconds, voting, {"members": members})


def run(ctx: BookContext) -> Page:
    seed = ctx.seeds()[0]
    big = None
    results: list[tuple[object, RowResult]] = []
    for row in ctx.book.rows:
        train = ctx.train
        if row.get("expand"):
            big = big if big is not None else expanded(ctx)
            train = big
        params = ctx.row_params(row, n_train=len(train.y))
        params["image_shape"] = tuple(ctx.image_shape)
        if row.get("ensemble"):
            result = fit_ensemble(ctx, row, params, train)
        else:
            estimator = CNNClassifier(**params, random_state=seed)
            result = ctx.fit_row(row.name, estimator, seed, train=train, settings=params)
        results.append((row, result))
    return Page(
        **ctx.page_heading(),
        settings=ctx.settings_line()
        + f"; ensemble of {ctx.book.ensemble_size}; expanded set: the training images and "
        f"their one-pixel shifts ({5 * len(ctx.train.y):,} images)",
        header=["row", "book (test)", "ours: validation", "ours: test", "epochs", "time"],
        rows=[
            [
                row.name,
                percent(row.book),
                percent(r.metrics["best_val_accuracy"]),
                percent(r.metrics["test_accuracy"]),
                int(r.metrics["epochs"]),
                f"{r.seconds:.0f} s",
            ]
            for row, r in results
        ],
        figure=plot(ctx, results),
        reading=reading(results),
        wall_seconds=0.0,
        notes=[
            *slow_start_notes(results),
            "Validation accuracy: the best epoch's for single networks (the book also keeps the "
            "best epoch on validation), the vote's for the ensemble.",
            "Weights: N(0, 1/n_in) for the sigmoid rows, N(0, 2/n_in) for the ReLU rows (the "
            "project's conf/model/cnn.yaml: the scaled init leaves many ReLUs dead here).",
        ],
    )


def slow_start_notes(results) -> list[str]:
    """A note for each row still near chance (< 50% on validation) after its epochs."""
    return [
        f"{row.name}: {percent(r.metrics['best_val_accuracy'])} on validation after "
        f"{int(r.metrics['epochs'])} epochs: still in the slow start of sigmoid networks; it "
        "needs more epochs (or more images per epoch) than this run gives it."
        for row, r in results
        if r.metrics["best_val_accuracy"] < 0.5
    ]


def reading(results) -> str:
    vals = [r.metrics["best_val_accuracy"] for _, r in results]
    steps = sum(b > a for a, b in zip(vals, vals[1:], strict=False))
    best_row, best = max(results, key=lambda x: x[1].metrics["best_val_accuracy"])
    return (
        f"{steps} of the book's {len(vals) - 1} steps improve validation accuracy here; best on "
        f"validation: {best_row.name} ({percent(best.metrics['best_val_accuracy'])}, test "
        f"{percent(best.metrics['test_accuracy'])}; the book's last row: "
        f"{percent(results[-1][0].book)})."
    )


def plot(ctx: BookContext, results):
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(results))
    ax.plot(x, [100 * row.book for row, _ in results], "s--", label="book (MNIST test)")
    ax.plot(x, [100 * r.metrics["test_accuracy"] for _, r in results], "o-", label="ours: test")
    ax.plot(
        x,
        [100 * r.metrics["best_val_accuracy"] for _, r in results],
        "^:",
        label="ours: validation",
    )
    ax.set_xticks(x, [row.name for row, _ in results], rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="accuracy (%)", title="Chapter 6: the progression")
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, f"{ctx.book.out_dir}/{ctx.book.name}.png")
