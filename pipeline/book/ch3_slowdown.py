"""Chapter 3, the learning slowdown: one sigmoid neuron, quadratic cost vs cross-entropy.

The neuron a = sigma(w x + b) learns x = 1 -> y = 0 by gradient descent, one step per epoch.
With the quadratic cost dC/dw = (a - y) sigma'(z) x: from w = b = 2 the neuron starts
saturated (sigma'(4) = 0.018) and learns slowly; with the cross-entropy dC/dw = (a - y) x,
no sigma'(z), so it learns fastest when it is most wrong. Built directly on
:class:`pipeline.nn.Network` (one :class:`~pipeline.nn.Dense` layer) and its costs.
"""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np

from pipeline.book.page import Page
from pipeline.book.runner import BookContext
from pipeline.nn import SGD, Dense, Network, get_activation, get_cost
from pipeline.reports import save_figure

NEEDS_DATA = False


def neuron(w: float, b: float, cost: str) -> Network:
    """The one-neuron network sigma(w x + b) in float64, with the given cost."""
    rng = np.random.default_rng(0)
    layer = Dense(1, 1, get_activation("sigmoid"), rng, "large", np.float64)
    layer.params["W"][...] = w
    layer.params["b"][...] = b
    return Network([layer], get_cost(cost))


def train_neuron(
    w: float, b: float, cost: str, eta: float, epochs: int, x: float, y: float
) -> list[dict[str, float]]:
    """Cost, output a, w and b after each of ``epochs`` steps (epoch 0: the start)."""
    net = neuron(w, b, cost)
    X, Y = np.array([[x]]), np.array([[y]])
    optimizer = SGD(eta)
    layer = net.layers[0]

    def state(epoch: int) -> dict[str, float]:
        return {
            "epoch": epoch,
            "cost": net.loss(X, Y, 1),
            "output": float(net.forward(X)[0, 0]),
            "w": float(layer.params["W"][0, 0]),
            "b": float(layer.params["b"][0]),
        }

    history = [state(0)]
    for epoch in range(1, epochs + 1):
        net.train_batch(X, Y, 1, optimizer)
        history.append(state(epoch))
    return history


def epochs_to_half_cost(history: list[dict[str, float]]) -> int | None:
    """The first epoch whose cost is at most half the starting cost (None: never)."""
    start = history[0]["cost"]
    return next((h["epoch"] for h in history if h["cost"] <= start / 2), None)


def run(ctx: BookContext) -> Page:
    book = ctx.book
    eta, epochs = float(book.learning_rate), int(book.epochs)
    curves = {}
    table_rows = []
    for row in book.rows:
        settings = {
            "cost": row.cost,
            "w": row.w,
            "b": row.b,
            "learning_rate": eta,
            "epochs": epochs,
            "x": book.x,
            "y": book.y,
        }
        with ctx.tracked_row(row.name, 0, settings) as tracker:
            started = time.perf_counter()
            history = train_neuron(row.w, row.b, row.cost, eta, epochs, book.x, book.y)
            seconds = time.perf_counter() - started
            tracker.log_history(history)
            half = epochs_to_half_cost(history)
            tracker.log_metrics({"epochs_to_half_cost": half} if half is not None else {})
        curves[row.name] = (row, history, half)
        table_rows.append(
            [
                row.name,
                f"{row.book_output:.2f}",
                "—" if row.get("book_final") is None else f"{row.book_final:.2f}",
                f"{history[0]['output']:.2f}",
                f"{history[-1]['output']:.3f}",
                f"{history[0]['cost']:.3f} -> {history[-1]['cost']:.4f}",
                half if half is not None else f"> {epochs}",
                f"{seconds:.2f} s",
            ]
        )
    figure = plot_curves(ctx, curves)
    return Page(
        **ctx.page_heading(),
        settings=f"one sigmoid neuron, x = {book.x} -> y = {book.y}; eta = {eta}; {epochs} epochs "
        "(one gradient step each)",
        header=[
            "row",
            "book: output at start",
            f"book: after {epochs}",
            "ours: at start",
            f"ours: after {epochs}",
            "cost: start -> end",
            "epochs to halve the cost",
            "time",
        ],
        rows=table_rows,
        figure=figure,
        reading=reading(curves, epochs),
        wall_seconds=0.0,
        notes=[
            "The book's figures: with the quadratic cost, from w = b = 2 the cost stays almost "
            "flat for the first ~150 epochs, while from w = 0.6, b = 0.9 it falls at once; with "
            "the cross-entropy both start falling at once, fastest where the neuron is most "
            "wrong.",
            "The book draws its cross-entropy curves with eta = 0.005; here every row uses the "
            "same eta (book.learning_rate), so the rows differ only in cost and start.",
        ],
    )


def reading(curves: dict, epochs: int) -> str:
    """Compare the epochs to halve the cost from the saturated start w = b = 2."""
    slow = {row.cost: h for row, _, h in curves.values() if row.w == 2.0}
    q, ce = slow.get("quadratic"), slow.get("cross_entropy")

    def shown(h: int | None) -> str:
        return str(h) if h is not None else f"> {epochs}"

    if q is None and ce is None:
        verdict = "neither cost halves within the run"
    elif q is None or (ce is not None and ce < q):
        verdict = "the book's pattern, cross-entropy learns faster from the saturated start"
    else:
        verdict = "NOT the book's pattern: the quadratic cost is as fast or faster"
    return (
        f"From w = b = 2 the cost halves after {shown(ce)} epochs with the cross-entropy and "
        f"{shown(q)} with the quadratic cost: {verdict}."
    )


def plot_curves(ctx: BookContext, curves: dict):
    fig, (ax_cost, ax_out) = plt.subplots(1, 2, figsize=(11, 4))
    styles = {"quadratic": "-", "cross_entropy": "--"}
    for name, (row, history, _) in curves.items():
        epochs = [h["epoch"] for h in history]
        ax_cost.plot(epochs, [h["cost"] for h in history], styles[row.cost], label=name)
        ax_out.plot(epochs, [h["output"] for h in history], styles[row.cost], label=name)
    ax_cost.set(xlabel="epoch", ylabel="cost C", title="Cost per epoch (the book's figures)")
    ax_out.set(xlabel="epoch", ylabel="output a", title="Output of the neuron (target 0)")
    for ax in (ax_cost, ax_out):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, f"{ctx.book.out_dir}/{ctx.book.name}.png")
