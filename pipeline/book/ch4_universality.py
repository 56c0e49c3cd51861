"""Chapter 4, universality: a single hidden layer approximates f(x) better with more neurons.

The book's visual proof builds f(x) = 0.2 + 0.4 x^2 + 0.3 x sin(15 x) + 0.05 cos(50 x) out of
steps made by pairs of steep sigmoid neurons, and argues that with enough hidden neurons any
continuous function is approximated to any accuracy. Here gradient descent finds the weights
(:class:`pipeline.MLPRegressor`, identity output and quadratic cost) for 1, 2, 5, ... hidden
neurons; the error on an even grid over [0, 1] is the test score.
"""

from __future__ import annotations

import time
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.book.page import Page
from pipeline.book.runner import BookContext
from pipeline.estimators import MLPRegressor
from pipeline.reports import save_figure

ESTIMATOR = MLPRegressor  # what each row trains (its parameters are checked first)

NEEDS_DATA = False


COS50_RMSE = 0.05 / np.sqrt(2)  # the RMSE of 0.05 cos(50x) over [0, 1]: a fit ignoring it


def f(x: np.ndarray) -> np.ndarray:
    """The book's function of chapter 4."""
    return 0.2 + 0.4 * x**2 + 0.3 * x * np.sin(15 * x) + 0.05 * np.cos(50 * x)


def network_input(x: np.ndarray, scale: float) -> np.ndarray:
    """x on [0, 1] as the network's input column scale * (2x - 1), centred on 0.

    A larger scale is the same as steeper initial sigmoids w x + b (the book's construction
    uses very steep ones, steps): with N(0, 1) weights, scale 5 lets gradient descent place
    steps across [0, 1] that scale 1 leaves as gentle ramps."""
    return (scale * (2 * x - 1))[:, None]


def record(history: list[dict], info) -> None:
    history.append({"epoch": info.epoch, **info.metrics()})


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def run(ctx: BookContext) -> Page:
    book = ctx.book
    rng = np.random.default_rng(int(ctx.cfg.seed))
    x_train, x_val = rng.uniform(0, 1, int(book.n_train)), rng.uniform(0, 1, int(book.n_val))
    grid = np.linspace(0, 1, int(book.n_grid))
    seed = ctx.seeds()[0]
    scale = float(book.input_scale)
    fits, rows = {}, []
    for row in book.rows:
        params = ctx.row_params(row)
        estimator = MLPRegressor(**params, random_state=seed)
        history: list[dict] = []
        with ctx.tracked_row(row.name, seed, params) as tracker:
            started = time.perf_counter()
            with threadpool_limits(limits=int(book.threads)):
                estimator.fit(
                    network_input(x_train, scale),
                    f(x_train),
                    validation_data=(network_input(x_val, scale), f(x_val)),
                    callbacks=[partial(record, history)],
                )
            seconds = time.perf_counter() - started
            tracker.log_history(history)
            prediction = estimator.predict(network_input(grid, scale))
            metrics = {
                "val_rmse": rmse(estimator.predict(network_input(x_val, scale)), f(x_val)),
                "test_rmse": rmse(prediction, f(grid)),
                "test_max_error": float(np.max(np.abs(prediction - f(grid)))),
                "test_r2": float(estimator.score(network_input(grid, scale), f(grid))),
                "train_seconds": round(seconds, 2),
            }
            tracker.log_metrics(metrics)
        fits[row.name] = prediction
        rows.append((row, metrics, seconds))
    return Page(
        **ctx.page_heading(),
        settings=ctx.settings_line()
        + f"; input {scale:g} (2x - 1); {book.n_train:,} training and {book.n_val:,} "
        "validation points x ~ U(0, 1), "
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
        reading=reading(rows, int(ctx.row_params(book.rows[0])["epochs"])),
        wall_seconds=0.0,
        notes=[
            "The book prints no error figures for this function: its claim is the pattern "
            "(any accuracy with enough hidden neurons), made by hand-set steep sigmoids. The "
            "cos(50 x) term alone has an RMSE of 0.035: a fit that ignores it cannot go below.",
            "Every row has the same eta and epochs (no per-row tuning); more epochs, or eta "
            "chosen per row on validation, would let the wider layers go further.",
        ],
    )


def reading(rows, epochs: int) -> str:
    """How the validation RMSE moves from the first row to the best and after it."""
    errors = [m["val_rmse"] for _, m, _ in rows]
    best = int(np.argmin(errors))
    first, best_row = rows[0][0].name, rows[best][0].name
    line = f"The validation RMSE falls from {errors[0]:.3f} ({first}) to {errors[best]:.3f} "
    line += f"({best_row}, the best; test {rows[best][1]['test_rmse']:.3f})"
    after = errors[best + 1 :]
    if not after:
        return line + ": more neurons, a closer fit, the book's pattern."
    within = max(after) <= 1.25 * errors[best]
    return line + (
        f"; with more neurons it stays {'near' if within else 'above'} it "
        f"({', '.join(f'{e:.3f}' for e in after)}): {epochs} epochs of SGD do not put the extra "
        f"neurons to use, near the {COS50_RMSE:.3f} floor of the cos(50x) term no fit follows."
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
