"""Activation functions sigma(z): value, derivative and the backward step dC/dz.

Every activation maps the weighted input z of a layer to its activation a = sigma(z).
For backpropagation a layer needs dC/dz given dC/da; for the element-wise activations this
is dC/da * sigma'(z) (the Hadamard product of BP1 and BP2). Softmax couples the outputs of
one sample, so its backward step uses the full Jacobian instead.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


class Activation:
    """Base class of the element-wise activations."""

    name: str = ""

    def fn(self, z: np.ndarray) -> np.ndarray:
        """a = sigma(z)."""
        raise NotImplementedError

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        """sigma'(z); ``a = sigma(z)`` is passed too, since most derivatives are cheaper from a."""
        raise NotImplementedError

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        """dC/dz = dC/da (.) sigma'(z), for the whole mini-batch."""
        return grad_a * self.prime(z, a)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Sigmoid(Activation):
    name = "sigmoid"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return expit(z)  # 1 / (1 + e^-z), without overflow for large |z|

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return a * (1.0 - a)


class Tanh(Activation):
    name = "tanh"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z)

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return 1.0 - a * a


class ReLU(Activation):
    name = "relu"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0)

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return (z > 0).astype(z.dtype)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        return grad_a * (z > 0)


class Identity(Activation):
    name = "identity"

    def fn(self, z: np.ndarray) -> np.ndarray:
        return z

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.ones_like(z)

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        return grad_a


class Softmax(Activation):
    """a_j = e^{z_j} / sum_k e^{z_k}, over the last axis (one row per sample)."""

    name = "softmax"

    def fn(self, z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def prime(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        raise TypeError("softmax has no element-wise derivative; use backward()")

    def backward(self, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
        # Jacobian-vector product: da_j/dz_i = a_j (delta_ij - a_i).
        return a * (grad_a - np.sum(grad_a * a, axis=-1, keepdims=True))


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
