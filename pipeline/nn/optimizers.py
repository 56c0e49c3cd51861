"""Mini-batch stochastic gradient descent and the book's learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CHUNK = 65536  # numbers per slice of a parameter update (256 KiB in float32)


class SGD:
    """w -> w - eta * dC/dw, or with momentum mu (chapter 3, "momentum-based gradient descent"):
    v -> mu v - eta dC/dw, w -> w + v.

    Gradients are those of the mini-batch mean cost, so eta multiplies an average, as the
    book's eta/m times a sum. Parameters are updated in place, through a work array per
    parameter for eta * dC/dw, so that a step allocates nothing.

    (Only numpy does the arithmetic here: a BLAS axpy from scipy would make one pass instead
    of two, but scipy ships its own OpenBLAS, whose threads then compete with numpy's for
    the cores: with two threads that made training several times slower. The network's
    large dense weights take :meth:`fused_step` instead, in steps that run one BLAS
    thread.)
    """

    def __init__(self, learning_rate: float, momentum: float = 0.0) -> None:
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self._velocity: dict[int, np.ndarray] = {}
        self._step: dict[int, np.ndarray] = {}

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Update ``params`` in place from ``grads`` (which are left as they were).

        Large arrays are updated a slice of ``CHUNK`` numbers at a time, so that eta * dC/dw
        stays in the cache between its two passes: the update then reads w and dC/dw from
        memory once and writes w once (a dense layer's W is larger than the cache).
        """
        for w, g in zip(params, grads, strict=True):
            step = self._step_buffer(w)
            if self.momentum == 0.0 and w.size <= CHUNK:
                w -= np.multiply(g, self.learning_rate, out=step)
                continue
            velocity = self._velocity_of(w) if self.momentum != 0.0 else None
            flat_w, flat_g, step = w.reshape(-1), g.reshape(-1), step.reshape(-1)
            for start in range(0, w.size, CHUNK):
                end = min(start + CHUNK, w.size)
                eta_g = np.multiply(flat_g[start:end], self.learning_rate, out=step[: end - start])
                if velocity is None:
                    flat_w[start:end] -= eta_g
                    continue
                v = velocity[start:end]
                v *= self.momentum
                v -= eta_g  # v = mu v - eta dC/dw
                flat_w[start:end] += v

    def _step_buffer(self, w: np.ndarray) -> np.ndarray:
        """The work array for eta * dC/dw of ``w``: shaped like w if one slice covers it (no
        reshapes then), else one slice."""
        step = self._step.get(id(w))
        if step is None:
            shape = w.shape if w.size <= CHUNK else (CHUNK,)
            step = self._step[id(w)] = np.empty(shape, w.dtype)
        return step

    def _velocity_of(self, w: np.ndarray) -> np.ndarray:
        """The momentum velocity v of ``w``, flat (zeros at its first step)."""
        velocity = self._velocity.get(id(w))
        if velocity is None:
            velocity = self._velocity[id(w)] = np.zeros(w.size, w.dtype)
        return velocity

    def fused_step(
        self,
        w: np.ndarray,
        add_gradient: Callable[[np.ndarray, float, float], None],
        l2_rate: float = 0.0,
    ) -> None:
        """The step for a weight array whose gradient dC0/dw is not stored:
        ``add_gradient(target, alpha, beta)`` computes target -> beta target + alpha dC0/dw
        in place (:meth:`~pipeline.nn.layers.Dense.add_weight_gradient`); ``l2_rate`` is an
        L2 penalty's lambda / n.

        Plain: w -> (1 - eta lambda / n) w - eta dC0/dw, all of it in ``add_gradient``.
        Momentum: v -> mu v - eta dC0/dw there, then v -> v - eta (lambda / n) w and
        w -> w + v, a slice at a time as :meth:`step` does.
        """
        eta, mu = self.learning_rate, self.momentum
        if mu == 0.0:
            add_gradient(w, -eta, 1.0 - eta * l2_rate)
            return
        velocity = self._velocity_of(w)
        add_gradient(velocity.reshape(w.shape), -eta, mu)
        flat_w, step = w.reshape(-1), self._step_buffer(w).reshape(-1)
        for start in range(0, w.size, CHUNK):
            end = min(start + CHUNK, w.size)
            v = velocity[start:end]
            if l2_rate:
                v -= np.multiply(flat_w[start:end], eta * l2_rate, out=step[: end - start])
            flat_w[start:end] += v


class LearningRateSchedule:
    """The book's schedule (chapter 3, "How to choose a neural network's hyper-parameters"):
    keep eta while validation accuracy improves; after ``patience`` epochs without
    improvement divide eta by ``factor``; stop once eta has fallen below
    ``min_fraction`` * eta0 (the book uses 1/128).

    ``kind="constant"`` never changes eta and never asks to stop.
    """

    def __init__(
        self,
        eta0: float,
        kind: str = "constant",
        patience: int = 10,
        factor: float = 2.0,
        min_fraction: float = 1.0 / 128,
    ) -> None:
        if kind not in ("constant", "halving"):
            raise ValueError(f"unknown schedule {kind!r}; expected 'constant' or 'halving'")
        self.eta0 = eta0
        self.eta = eta0
        self.kind = kind
        self.patience = patience
        self.factor = factor
        self.min_fraction = min_fraction
        self._best = -np.inf
        self._epochs_without_improvement = 0

    def update(self, validation_score: float | None) -> bool:
        """Record one epoch's validation score; return True when training should stop."""
        if self.kind == "constant" or validation_score is None:
            return False
        if validation_score > self._best:
            self._best = validation_score
            self._epochs_without_improvement = 0
            return False
        self._epochs_without_improvement += 1
        if self._epochs_without_improvement >= self.patience:
            self.eta /= self.factor
            self._epochs_without_improvement = 0
        return self.eta < self.eta0 * self.min_fraction
