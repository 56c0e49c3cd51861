"""A feed-forward network: a stack of layers, a cost on the output and a weight penalty."""

from __future__ import annotations

import numpy as np

from pipeline.nn.activations import Identity
from pipeline.nn.costs import Cost
from pipeline.nn.layers import Conv2D, Dense, Layer, MaxPool2D
from pipeline.nn.optimizers import SGD
from pipeline.nn.regularizers import Regularizer


class Network:
    """Layers applied in order; the last layer is a :class:`Dense` output layer.

    ``train_batch`` is one step of mini-batch SGD: forward pass, output error delta^L from the
    cost (BP1), backward pass through the layers (BP2-BP4), penalty gradient, update.

    A convolution with a non-decreasing activation (sigmoid, tanh, ReLU) followed by
    max-pooling hands its activation to the pool: max(sigma(z)) = sigma(max(z)), so the
    network computes the same function with sigma and sigma' applied to the pooled map, p*p
    times fewer numbers; and it delivers z grouped by offset in the pooling blocks
    (``Conv2D.block``), so that pooling compares contiguous slabs. The layers' parameters
    are unchanged.
    """

    def __init__(
        self,
        layers: list[Layer],
        cost: Cost,
        regularizer: Regularizer | None = None,
    ) -> None:
        if not layers or not isinstance(layers[-1], Dense):
            raise ValueError("the last layer of a Network must be a Dense output layer")
        self.layers = layers
        self.cost = cost
        self.regularizer = regularizer or Regularizer()
        # max(sigma(z)) = sigma(max(z)) for a non-decreasing sigma: the pool applies it, and
        # takes the convolution's output grouped by offset in the pooling blocks.
        for conv, pool in zip(layers, layers[1:], strict=False):
            if (
                isinstance(conv, Conv2D)
                and isinstance(pool, MaxPool2D)
                and conv.activation.monotone
                and isinstance(pool.activation, Identity)
            ):
                conv.activation, pool.activation = pool.activation, conv.activation
                conv.block = pool.pool_size
        # Flat lists of the arrays the hot loop touches, built once (updated in place).
        self._params = [value for _, value, _ in self.parameters()]
        self._grads = [grad for _, _, grad in self.parameters()]
        self._weights = [layer.params["W"] for layer in layers if "W" in layer.params]
        self._weight_grads = [layer.grads["W"] for layer in layers if "W" in layer.params]
        if not all(p.flags.c_contiguous for p in self._params + self._grads):
            raise ValueError("parameters and gradients must be C-contiguous arrays")
        # The input needs no gradient: skip the product that would compute it.
        for layer in layers:
            if isinstance(layer, Dense | Conv2D):
                layer.needs_input_grad = False
                break

    # --- parameters -------------------------------------------------------------------------
    def parameters(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(name, value, gradient) for every parameter, e.g. ("2.W", W, dC/dW)."""
        return [
            (f"{i}.{key}", layer.params[key], layer.grads[key])
            for i, layer in enumerate(self.layers)
            for key in layer.params
        ]

    @property
    def weights(self) -> list[np.ndarray]:
        """The weight arrays (what the L1/L2 penalty applies to), biases excluded."""
        return self._weights

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value, _ in self.parameters()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        own = {name: value for name, value, _ in self.parameters()}
        if set(own) != set(state):
            raise ValueError(f"parameter names differ: expected {sorted(own)}, got {sorted(state)}")
        for name, value in own.items():
            if state[name].shape != value.shape:
                raise ValueError(
                    f"parameter {name!r} has shape {state[name].shape}, expected {value.shape}"
                )
            value[...] = state[name]

    # --- forward ---------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Output activations a^L for a mini-batch x.

        In training the result is the output layer's work buffer, overwritten by the next
        training pass; at prediction time it is a new array.
        """
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def loss(self, x: np.ndarray, y: np.ndarray, n: int, training: bool = False) -> float:
        """Mean cost over the batch plus the weight penalty for a training set of size n."""
        return self.cost.fn(self.forward(x, training), y) + self.regularizer.penalty(
            self.weights, n
        )

    # --- backward --------------------------------------------------------------------------
    def backprop(self, x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
        """Fill every layer's ``grads`` with d(loss)/d(param) for the batch.

        ``y`` is one-hot (m, n_outputs); ``n`` is the training set size for the penalty.
        Returns the output activations a^L of the forward pass (the cost is not computed
        here: the training loop scores a whole epoch's outputs at once, which is cheaper);
        like every array of the training pass, it is valid until the next one.
        """
        a = self.forward(x, training=True)
        out = self.layers[-1]
        delta = self.cost.delta(  # BP1, per sample
            out._z, a, y, out.activation, out=out._buffer("delta", a.shape, a.dtype)
        )
        delta *= a.dtype.type(1.0 / len(x))  # the batch mean
        grad = out.backward_delta(delta)
        for layer in reversed(self.layers[:-1]):
            grad = layer.backward(grad)
        if self.regularizer.active:
            for w, g in zip(self._weights, self._weight_grads, strict=True):
                self.regularizer.add_gradient(w, g, n)
        return a

    def train_batch(self, x: np.ndarray, y: np.ndarray, n: int, optimizer: SGD) -> np.ndarray:
        """One SGD step on the mini-batch (x, y); returns a^L from before the step."""
        a = self.backprop(x, y, n)
        optimizer.step(self._params, self._grads)
        return a

    def release_buffers(self) -> None:
        """Free every layer's work buffers (training allocates them again when it resumes)."""
        for layer in self.layers:
            layer.release_buffers()

    def gradient_norms(self) -> dict[str, float]:
        """||dC/dW|| per parameterised layer after the last :meth:`backprop`."""
        return {
            f"layer{i}": float(np.linalg.norm(layer.grads["W"]))
            for i, layer in enumerate(self.layers)
            if "W" in layer.grads
        }
