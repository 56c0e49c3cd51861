"""Activation functions sigma(z): value, derivative and the backward step dC/dz.

Every activation maps the weighted input z of a layer to its activation a = sigma(z).
For backpropagation a layer needs dC/dz given dC/da; for the element-wise activations this
is dC/da * sigma'(z) (the Hadamard product of BP1 and BP2). Softmax couples the outputs of
one sample, so its backward step uses the full Jacobian instead.

``fn`` and ``backward`` take an optional ``out`` array, so that the training loop can write
into buffers it allocated once instead of allocating new arrays for every mini-batch; ``out``
must not be one of the inputs of ``backward``. The identity returns its input itself.
"""

from __future__ import annotations

import numpy as np


def row_max(x: np.ndarray) -> np.ndarray:
    """``x.max(axis=-1, keepdims=True)`` of a 2-D array with short rows (one number per class).

    numpy reduces each short row in a loop of its own, which for many rows is ~10x slower
    than the same maxima taken down the long rows of the transposed copy.
    """
    if x.ndim != 2:
        return x.max(axis=-1, keepdims=True)
    return np.ascontiguousarray(x.T).max(axis=0)[:, None]


def row_sum(x: np.ndarray) -> np.ndarray:
    """``x.sum(axis=-1, keepdims=True)``, as a product with a column of ones (BLAS: several
    times faster than numpy's reduction of many short rows)."""
    return x @ np.ones((x.shape[-1], 1), x.dtype)


class Activation:
    """Base class of the element-wise activations."""

    name: str = ""
    # Non-decreasing, so that max-pooling commutes with it: max(sigma(z)) = sigma(max(z)).
    monotone: bool = True

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """a = sigma(z), written into ``out`` if given (it may be z itself)."""
        raise NotImplementedError

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        """sigma'(z); ``a = sigma(z)`` is passed too, since most derivatives are cheaper from a."""
        raise NotImplementedError

    def backward(
        self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """dC/dz = dC/da (.) sigma'(z), for the whole mini-batch."""
        return np.multiply(grad_a, self.prime(z, a), out=out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sigmoid(Activation):
    name = "sigmoid"

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        # 1 / (1 + e^-z) in four in-place passes of numpy's vectorised loops: as accurate as
        # scipy's expit and ~3x faster in float32. For very negative z (< -88 in float32)
        # e^-z overflows to inf and a = 1 / inf = 0, the right limit: not an error.
        with np.errstate(over="ignore"):
            a = np.negative(z, out=out)
            np.exp(a, out=a)
        a += 1
        return np.divide(1, a, out=a)

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return a * (1.0 - a)

    def backward(
        self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        # dC/da (.) a (1 - a), in three passes without temporaries.
        out = np.subtract(1, a, out=out)
        out *= a
        out *= grad_a
        return out


class Tanh(Activation):
    name = "tanh"

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.tanh(z, out=out)

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return 1.0 - a * a

    def backward(
        self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        # dC/da (.) (1 - a^2), without temporaries.
        out = np.multiply(a, a, out=out)
        np.subtract(1, out, out=out)
        out *= grad_a
        return out


class ReLU(Activation):
    name = "relu"

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.maximum(z, 0, out=out)

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return (z > 0).astype(z.dtype)

    def backward(
        self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        # sigma'(z) is 0 or 1: multiply by the boolean z > 0, no 0/1 float array needed.
        return np.multiply(grad_a, z > 0, out=out)


class Identity(Activation):
    name = "identity"

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return z  # no copy: a is z

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.ones_like(z)

    def backward(
        self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        return grad_a  # no copy: dC/dz is dC/da


class Softmax(Activation):
    """a_j = e^{z_j} / sum_k e^{z_k}, over the last axis (one row per sample)."""

    name = "softmax"
    monotone = False  # not element-wise

    def fn(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        # Shifting z by its row maximum changes nothing and keeps e^z from overflowing.
        e = np.subtract(z, row_max(z), out=out)
        np.exp(e, out=e)
        e /= row_sum(e)
        return e

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        raise TypeError("softmax has no element-wise derivative; use backward()")

    def backward(
        self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        # Jacobian-vector product: da_j/dz_i = a_j (delta_ij - a_i).
        out = np.subtract(grad_a, row_sum(grad_a * a), out=out)
        out *= a
        return out


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Sigmoid, Tanh, ReLU, Identity, Softmax)
}
HIDDEN_ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
OUTPUT_ACTIVATIONS = ("sigmoid", "softmax")


def get_activation(name: str) -> Activation:
    """The activation called ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None
