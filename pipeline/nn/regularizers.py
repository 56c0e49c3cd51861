"""L2 and L1 weight penalties, scaled by lambda / n as in chapter 3.

n is the size of the whole training set, so lambda keeps its meaning as the mini-batch size
changes. Only weights are penalised, never biases.
"""

from __future__ import annotations

import numpy as np


class Regularizer:
    """Sum of an L2 and an L1 penalty: (lambda2 / 2n) sum w^2 + (lambda1 / n) sum |w|."""

    def __init__(self, l2: float = 0.0, l1: float = 0.0) -> None:
        self.l2 = float(l2)
        self.l1 = float(l1)

    @property
    def active(self) -> bool:
        return self.l2 > 0 or self.l1 > 0

    def penalty(self, weights: list[np.ndarray], n: int) -> float:
        total = 0.0
        for w in weights:
            if self.l2:
                total += 0.5 * self.l2 / n * float(np.vdot(w, w))
            if self.l1:
                total += self.l1 / n * float(np.abs(w).sum())
        return total

    def add_gradient(self, w: np.ndarray, grad_w: np.ndarray, n: int) -> None:
        """grad_w += d(penalty)/dw, in place: (lambda2 / n) w + (lambda1 / n) sgn(w)."""
        if self.l2:
            grad_w += (self.l2 / n) * w
        if self.l1:
            grad_w += (self.l1 / n) * np.sign(w)

    def __repr__(self) -> str:
        return f"Regularizer(l2={self.l2}, l1={self.l1})"
