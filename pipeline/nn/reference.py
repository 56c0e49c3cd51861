"""The book's formulas written out plainly: the reference the fast layers are tested against.

One formula per line, no work buffers, no fusion, no threads: a convolution from its
definition (an einsum over the k x k windows), the activation before the max-pool, BP1-BP4 as
chapter 2 writes them (with our row-vector convention: a mini-batch is the rows of x, and the
book's w is our W transposed), and plain SGD with momentum and L2 weight decay (chapter 3).
Slow, and meant to be: ``tests/test_numerics.py`` checks in float64, batch after batch, that
:class:`pipeline.nn.Network` computes the same numbers to rtol 1e-10.

Build one with :func:`reference_of`, which copies a network's layers and parameters.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.nn import layers as fast
from pipeline.nn.network import Network


# --- activations: sigma and sigma' ---------------------------------------------------------
def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


SIGMA = {
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "identity": lambda z: z,
    "softmax": softmax,
}
SIGMA_PRIME = {
    "sigmoid": lambda z: sigmoid(z) * (1.0 - sigmoid(z)),
    "tanh": lambda z: 1.0 - np.tanh(z) ** 2,
    "relu": lambda z: (z > 0).astype(z.dtype),
    "identity": np.ones_like,
}


# --- layers --------------------------------------------------------------------------------
class Dense:
    """z = x W + b, a = sigma(z)."""

    def __init__(self, W: np.ndarray, b: np.ndarray, activation: str) -> None:
        self.params = {"W": W.copy(), "b": b.copy()}
        self.activation = activation

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        self.z = x @ self.params["W"] + self.params["b"]
        return SIGMA[self.activation](self.z)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        delta = grad * SIGMA_PRIME[self.activation](self.z)  # BP2
        return self.backward_delta(delta)

    def backward_delta(self, delta: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        grads = {"W": self.x.T @ delta, "b": delta.sum(axis=0)}  # BP4, BP3
        return delta @ self.params["W"].T, grads


class Conv2D:
    """z[n, i, j, f] = sum_{p, q, c} x[n, i+p, j+q, c] K[p, q, c, f] + b[f], a = sigma(z)."""

    def __init__(self, K: np.ndarray, b: np.ndarray, activation: str) -> None:
        self.params = {"W": K.copy(), "b": b.copy()}
        self.activation = activation

    def forward(self, x: np.ndarray) -> np.ndarray:
        k = self.params["W"].shape[0]
        self.x = x
        self.windows = sliding_window_view(x, (k, k), axis=(1, 2))  # (m, H', W', C, k, k)
        self.z = np.einsum("nijcpq,pqcf->nijf", self.windows, self.params["W"]) + self.params["b"]
        return SIGMA[self.activation](self.z)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        delta = grad * SIGMA_PRIME[self.activation](self.z)  # BP2
        grads = {
            "W": np.einsum("nijcpq,nijf->pqcf", self.windows, delta),  # BP4 over positions
            "b": delta.sum(axis=(0, 1, 2)),  # BP3
        }
        # dC/dx[n, i+p, j+q, c] += delta[n, i, j, f] K[p, q, c, f], for every (p, q).
        K = self.params["W"]
        k = K.shape[0]
        _, h, w, _ = delta.shape
        dx = np.zeros_like(self.x)
        for p in range(k):
            for q in range(k):
                dx[:, p : p + h, q : q + w] += np.einsum("nijf,cf->nijc", delta, K[p, q])
        return dx, grads


class MaxPool2D:
    """The maximum of each p x p block (rows and columns outside whole blocks dropped);
    the error goes to the block's maximum."""

    def __init__(self, p: int, activation: str = "identity") -> None:
        self.p, self.activation, self.params = p, activation, {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        p = self.p
        m, h, w, c = x.shape
        self.x = x
        self.blocks = x[:, : h - h % p, : w - w % p].reshape(m, h // p, p, w // p, p, c)
        self.z = self.blocks.max(axis=(2, 4))
        return SIGMA[self.activation](self.z)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        delta = grad * SIGMA_PRIME[self.activation](self.z)
        is_max = self.blocks == self.z[:, :, None, :, None, :]
        dx = np.zeros_like(self.x)
        m, hp, p, wp, _, c = self.blocks.shape
        dx[:, : hp * p, : wp * p] = (is_max * delta[:, :, None, :, None, :]).reshape(
            m, hp * p, wp * p, c
        )
        return dx, {}


class Flatten:
    def __init__(self) -> None:
        self.params = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return grad.reshape(self.shape), {}


# --- the network ---------------------------------------------------------------------------
def output_delta(cost: str, activation: str, z: np.ndarray, a: np.ndarray, y: np.ndarray):
    """BP1, delta^L = dC/dz^L per sample, for the book's three costs."""
    if cost == "quadratic":
        return (a - y) * SIGMA_PRIME[activation](z)
    if (cost, activation) in {("cross_entropy", "sigmoid"), ("log_likelihood", "softmax")}:
        return a - y  # sigma' cancels (chapter 3)
    raise ValueError(f"no reference BP1 for cost {cost!r} with a {activation!r} output")


class ReferenceNetwork:
    """Layers, cost, L2 penalty lambda and SGD with momentum mu, as the book writes them."""

    def __init__(self, layers: list, cost: str, l2: float = 0.0) -> None:
        self.layers, self.cost, self.l2 = layers, cost, l2
        self.velocity: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backprop(self, x: np.ndarray, y: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(dC/dparam of the batch-mean cost under the network's names, a^L)."""
        a = self.forward(x)
        out = self.layers[-1]
        delta = output_delta(self.cost, out.activation, out.z, a, y) / len(x)  # BP1
        grad, own = out.backward_delta(delta)
        grads = {f"{len(self.layers) - 1}.{key}": g for key, g in own.items()}
        for i in range(len(self.layers) - 2, -1, -1):
            grad, own = self.layers[i].backward(grad)  # BP2, then BP3 and BP4
            grads.update({f"{i}.{key}": g for key, g in own.items()})
        return grads, a

    def sgd_step(self, x: np.ndarray, y: np.ndarray, eta: float, mu: float, n: int) -> np.ndarray:
        """v -> mu v - eta (dC/dw + (lambda/n) w), w -> w + v (biases unpenalised); returns
        a^L from before the step."""
        grads, a = self.backprop(x, y)
        for name, g in grads.items():
            i, key = name.split(".")
            w = self.layers[int(i)].params[key]
            if key == "W":
                g = g + (self.l2 / n) * w
            self.velocity[name] = mu * self.velocity.get(name, 0.0) - eta * g
            w += self.velocity[name]
        return a

    def get_state(self) -> dict[str, np.ndarray]:
        return {
            f"{i}.{key}": value.copy()
            for i, layer in enumerate(self.layers)
            for key, value in layer.params.items()
        }


def _reference_layer(layer: fast.Layer):
    if isinstance(layer, fast.Dense):
        return Dense(layer.params["W"], layer.params["b"], layer.activation.name)
    if isinstance(layer, fast.Conv2D) and not isinstance(layer, fast.ConvPool2D):
        return Conv2D(layer.params["W"], layer.params["b"], layer.activation.name)
    if isinstance(layer, fast.MaxPool2D):
        return MaxPool2D(layer.pool_size, layer.activation.name)
    if isinstance(layer, fast.Flatten):
        return Flatten()
    raise TypeError(f"no reference layer for {type(layer).__name__}")


def reference_of(net: Network) -> ReferenceNetwork:
    """A reference network with copies of ``net``'s given layers and parameters (L2 only:
    the book's chapter-3 penalty)."""
    if net.regularizer.l1:
        raise ValueError("the reference network has no L1 penalty")
    layers = [_reference_layer(layer) for layer in net.layers]
    return ReferenceNetwork(layers, net.cost.name, net.regularizer.l2)
