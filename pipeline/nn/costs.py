"""Cost functions C(a, y), each with its value and its output error delta^L (BP1).

Costs are averaged over the mini-batch: C = (1/m) sum_x C_x. ``delta`` returns the per-sample
output error dC_x/dz^L (not divided by m); the network applies the 1/m.

As in Nielsen's network2.py, each cost knows its own delta^L. The interesting cases are the
pairs where sigma'(z) cancels: cross-entropy with sigmoid outputs and log-likelihood with
softmax outputs both give delta^L = a - y, which is why they learn fast even when the output
neurons saturate (chapter 3).
"""

from __future__ import annotations

import numpy as np

from pipeline.nn.activations import Activation, Sigmoid, Softmax

# Probabilities are clipped away from 0 and 1 before taking logs, so that a saturated
# neuron gives a large but finite cost rather than inf or nan.
_EPS = {np.dtype(np.float32): 1e-7, np.dtype(np.float64): 1e-12}


def _clip(a: np.ndarray) -> np.ndarray:
    eps = _EPS.get(a.dtype, 1e-12)
    return np.clip(a, eps, 1.0 - eps)


class Cost:
    name: str = ""

    def fn(self, a: np.ndarray, y: np.ndarray) -> float:
        """Mean cost over the mini-batch; ``a`` and ``y`` have shape (m, n_outputs)."""
        raise NotImplementedError

    def grad_a(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """dC_x/da^L per sample, shape (m, n_outputs)."""
        raise NotImplementedError

    def delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """BP1: delta^L = nabla_a C (.) sigma'(z^L), per sample, shape (m, n_outputs).

        Written into ``out`` if given (a buffer other than z, a and y).
        """
        return activation.backward(z, a, self.grad_a(a, y), out=out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class QuadraticCost(Cost):
    """C_x = 1/2 ||y - a||^2 (chapter 1)."""

    name = "quadratic"

    def fn(self, a: np.ndarray, y: np.ndarray) -> float:
        diff = a - y
        return float(0.5 * np.sum(diff * diff) / len(a))

    def grad_a(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        return a - y


class CrossEntropyCost(Cost):
    """C_x = -sum_j [y_j ln a_j + (1 - y_j) ln(1 - a_j)] (chapter 3)."""

    name = "cross_entropy"

    def fn(self, a: np.ndarray, y: np.ndarray) -> float:
        a = _clip(a)
        return float(-np.sum(y * np.log(a) + (1.0 - y) * np.log1p(-a)) / len(a))

    def grad_a(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        a = _clip(a)
        return (a - y) / (a * (1.0 - a))

    def delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        if isinstance(activation, Sigmoid):
            # (a - y) / (a (1 - a)) * sigma'(z), and sigma'(z) = a (1 - a): the factor cancels,
            # so neither is computed.
            return np.subtract(a, y, out=out)
        return super().delta(z, a, y, activation, out)


class LogLikelihoodCost(Cost):
    """C_x = -ln a_y, the log-likelihood of the correct class (chapter 3, with softmax)."""

    name = "log_likelihood"

    def fn(self, a: np.ndarray, y: np.ndarray) -> float:
        return float(-np.sum(y * np.log(_clip(a))) / len(a))

    def grad_a(self, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        return -y / _clip(a)

    def delta(
        self,
        z: np.ndarray,
        a: np.ndarray,
        y: np.ndarray,
        activation: Activation,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        if isinstance(activation, Softmax):
            # The softmax Jacobian and -y/a combine to a - y (y one-hot, rows of a sum to 1):
            # neither is computed.
            return np.subtract(a, y, out=out)
        return super().delta(z, a, y, activation, out)


COSTS: dict[str, type[Cost]] = {
    cls.name: cls for cls in (QuadraticCost, CrossEntropyCost, LogLikelihoodCost)
}


def get_cost(name: str) -> Cost:
    """The cost called ``name`` (one of :data:`COSTS`)."""
    try:
        return COSTS[name]()
    except KeyError:
        raise ValueError(f"unknown cost {name!r}; expected one of {sorted(COSTS)}") from None
