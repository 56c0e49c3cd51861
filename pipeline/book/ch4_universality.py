"""Chapter 4, universality: a single hidden layer approximates f(x) better with more neurons.

The book's visual proof builds f(x) = 0.2 + 0.4 x^2 + 0.3 x sin(15 x) + 0.05 cos(50 x) out of
steps made by pairs of steep sigmoid neurons, and argues that with enough hidden neurons any
continuous function is approximated to any accuracy. Here gradient descent finds the weights
(:class:`pipeline.MLPRegressor`, identity output and quadratic cost) for 1, 2, 5, ... hidden
neurons; the error on an even grid over [0, 1] is the test score.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.book.page import Page
from pipeline.book.runner import BookContext
from pipeline.estimators import MLPRegressor
from pipeline.reports import save_figure

NEEDS_DATA = False


def f(x: np.ndarray) -> np.ndarray:
    """The book's function of chapter 4."""
    return 0.2 + 0.4 * x**2 + 0.3 * x * np.sin(15 * x) + 0.05 * np.cos(50 * x)


def network_input(x: np.ndarray) -> np.ndarray:
    """x on [0, 1] as the network's input column 2x - 1 on [-1, 1]."""
    return (2 * x - 1)[:, None]


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def run(ctx: BookContext) -> Page:
    book = ctx.book
    rng = np.random.default_rng(int(ctx.cfg.seed))
    x_train, x_val = rng.uniform(0, 1, int(book.n_train)), rng.uniform(0, 1, int(book.n_val))
    grid = np.linspace(0, 1, int(book.n_grid))
    seed = ctx.seeds()[0]
    fits, rows = {}, []
    for row in book.rows:
        params = ctx.row_params(row)
        estimator = MLPRegressor(**params, random_state=seed)
        with ctx.tracked_row(row.name, seed, params) as tracker:
            started = time.perf_counter()
            with threadpool_limits(limits=int(book.threads)):
                estimator.fit(
                    network_input(x_train),
                    f(x_train),
                    validation_data=(network_input(x_val), f(x_val)),
                    callbacks=[lambda info, t=tracker: t.log_metrics(info.metrics(), info.epoch)],
                )
            seconds = time.perf_counter() - started
            prediction = estimator.predict(network_input(grid))
            metrics = {
                "val_rmse": rmse(estimator.predict(network_input(x_val)), f(x_val)),
                "test_rmse": rmse(prediction, f(grid)),
                "test_max_error": float(np.max(np.abs(prediction - f(grid)))),
                "test_r2": float(estimator.score(network_input(grid), f(grid))),
                "train_seconds": round(seconds, 2),
            }
            tracker.log_metrics(metrics)
        fits[row.name] = prediction
        rows.append((row, metrics, seconds))
    return Page(
        name=book.name,
        chapter=book.chapter,
        title=book.title,
        command=ctx.command,
        data=ctx.data_summary(),
        settings=ctx.settings_line()
        + f"; {book.n_train:,} training and {book.n_val:,} validation points x ~ U(0, 1), "
        f"test: {book.n_grid} evenly spaced points",
        header=[
            "hidden neurons",
            "book",
            "ours: validation RMSE",
            "ours: test RMSE",
            "ours: test max error",
            "ours: test R^2",
            "time",
        ],
        rows=[
            [
                row.name,
                "better with more neurons",
                f"{m['val_rmse']:.4f}",
                f"{m['test_rmse']:.4f}",
                f"{m['test_max_error']:.3f}",
                f"{m['test_r2']:.3f}",
                f"{s:.0f} s",
            ]
            for row, m, s in rows
        ],
        figure=plot(ctx, grid, fits),
        reading=reading(rows),
        wall_seconds=0.0,
        notes=[
            "The book prints no error figures for this function: its claim is the pattern "
            "(any accuracy with enough hidden neurons), made by hand-set steep sigmoids. The "
            "cos(50 x) term alone has an RMSE of 0.035: a fit that ignores it cannot go below.",
        ],
    )


def reading(rows) -> str:
    errors = [m["val_rmse"] for _, m, _ in rows]
    falls = all(b <= a * 1.05 for a, b in zip(errors, errors[1:], strict=False))
    best_row, best, _ = min(rows, key=lambda r: r[1]["val_rmse"])
    pattern = "falls" if falls else "does NOT fall steadily"
    return (
        f"The validation RMSE {pattern} as hidden neurons are added ({errors[0]:.3f} with "
        f"{rows[0][0].name} to {errors[-1]:.3f} with {rows[-1][0].name}); best: "
        f"{best_row.name} (test RMSE {best['test_rmse']:.3f})."
    )


def plot(ctx: BookContext, grid: np.ndarray, fits: dict[str, np.ndarray]):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(grid, f(grid), "k-", lw=2.5, label="f(x), the book's function")
    for name, prediction in fits.items():
        ax.plot(grid, prediction, lw=1.2, label=name)
    ax.set(xlabel="x", ylabel="f(x)", title="One hidden layer, more and more neurons")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, f"{ctx.book.out_dir}/{ctx.book.name}.png")
