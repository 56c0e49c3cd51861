"""Layers of the book's networks, each working on a whole mini-batch at once.

Every layer has ``forward(x, training)``, which in training caches what the backward pass
needs (nothing is kept at prediction time, so predicting on many images holds no memory), and
``backward(grad)``, which takes dC/d(output) for the mini-batch and returns dC/d(input),
filling ``grads`` for the layer's own parameters on the way (BP2-BP4). Parameterised layers
expose ``params`` and ``grads`` as dicts of arrays with the same keys, updated in place.

Images travel as (m, height, width, channels) arrays ("NHWC"), so that a convolution is one
strided view of the input and one matrix product with the filters.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.nn.activations import Activation, Identity
from pipeline.nn.initializers import init_biases, init_weights


class Layer:
    """A layer without parameters; subclasses with parameters fill ``params``/``grads``."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample's output given one sample's input shape."""
        return input_shape


class Dense(Layer):
    """Fully connected layer: z = x W + b, a = sigma(z).

    W has shape (n_in, n_out), so a mini-batch x of shape (m, n_in) maps to (m, n_out) in one
    matrix product (the book's w is our W transposed).
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        activation: Activation,
        rng: np.random.Generator,
        init: str = "scaled",
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.params = {
            "W": init_weights(init, (n_in, n_out), n_in, rng, dtype),
            "b": init_biases(init, (n_out,), rng, dtype),
        }
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.needs_input_grad = True

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        z = x @ self.params["W"]
        z += self.params["b"]
        a = self.activation.fn(z)
        if training:
            self._x, self._z, self._a = x, z, a
        return a

    def backward(self, grad: np.ndarray) -> np.ndarray:
        """BP2: delta = dC/da (.) sigma'(z), then :meth:`backward_delta`."""
        return self.backward_delta(self.activation.backward(self._z, self._a, grad))

    def backward_delta(self, delta: np.ndarray) -> np.ndarray:
        """Gradients from this layer's error delta = dC/dz, shape (m, n_out).

        BP3: dC/db = sum over the batch of delta.  BP4: dC/dW = x^T delta.
        Returns dC/dx = delta W^T, the first factor of BP2 for the layer below.
        """
        np.matmul(self._x.T, delta, out=self.grads["W"])
        np.add.reduce(delta, axis=0, out=self.grads["b"])
        if not self.needs_input_grad:
            return delta[:, :0]
        return delta @ self.params["W"].T

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.params["W"].shape[1],)


class Conv2D(Layer):
    """Valid 2-D convolution, stride 1, followed by an activation.

    Input (m, H, W, C), filters K of shape (k, k, C, F), output (m, H-k+1, W-k+1, F):
    z[n, i, j, f] = sum_{p, q, c} x[n, i+p, j+q, c] K[p, q, c, f] + b[f]  (a cross-correlation,
    as in the book's network3.py and every deep-learning library).

    Forward: the k x k windows of x come from one strided view; copying them into rows gives
    a (m*H'*W', k*k*C) matrix, and one product with K reshaped to (k*k*C, F) gives z.
    Backward: dC/dK = windows^T delta (BP4 summed over positions), dC/db = sum of delta (BP3),
    and dC/dx is the "full" convolution of delta with K rotated by 180 degrees: the same
    strided-view-and-product on delta padded by k-1.
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        kernel_size: int,
        activation: Activation,
        rng: np.random.Generator,
        init: str = "scaled",
        dtype: np.dtype | type = np.float32,
    ) -> None:
        super().__init__()
        k = kernel_size
        self.kernel_size = k
        self.activation = activation
        n_in = k * k * in_channels
        self.params = {
            "W": init_weights(init, (k, k, in_channels, filters), n_in, rng, dtype),
            "b": init_biases(init, (filters,), rng, dtype),
        }
        self.grads = {key: np.zeros_like(v) for key, v in self.params.items()}
        self.needs_input_grad = True

    @staticmethod
    def _windows(x: np.ndarray, k: int) -> np.ndarray:
        """The k x k windows of x (m, H, W, C) as rows: shape (m*H'*W', k*k*C)."""
        m, h, w, c = x.shape
        view = sliding_window_view(x, (k, k), axis=(1, 2))  # (m, H', W', C, k, k), no copy
        view = view.transpose(0, 1, 2, 4, 5, 3)  # (m, H', W', k, k, C)
        return view.reshape(m * (h - k + 1) * (w - k + 1), k * k * c)  # the one copy

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        k = self.kernel_size
        m, h, w, _ = x.shape
        if h < k or w < k:
            raise ValueError(f"a {k}x{k} convolution does not fit a {h}x{w} input image")
        kernel = self.params["W"]
        cols = self._windows(x, k)
        z = cols @ kernel.reshape(-1, kernel.shape[-1])
        z += self.params["b"]
        z = z.reshape(m, h - k + 1, w - k + 1, kernel.shape[-1])
        a = self.activation.fn(z)
        if training:
            self._cols, self._x_shape, self._z, self._a = cols, x.shape, z, a
        return a

    def backward(self, grad: np.ndarray) -> np.ndarray:
        delta = self.activation.backward(self._z, self._a, grad)  # BP2 for this layer
        kernel = self.params["W"]
        k, _, c, f = kernel.shape
        delta_rows = delta.reshape(-1, f)
        np.matmul(self._cols.T, delta_rows, out=self.grads["W"].reshape(-1, f))  # BP4
        np.add.reduce(delta_rows, axis=0, out=self.grads["b"])  # BP3
        if not self.needs_input_grad:
            return delta[..., :0]
        # dC/dx = full convolution of delta with the kernel rotated by 180 degrees.
        m, h, w, _ = self._x_shape
        padded = np.pad(delta, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0)))
        rotated = kernel[::-1, ::-1].transpose(0, 1, 3, 2).reshape(k * k * f, c)
        return (self._windows(padded, k) @ rotated).reshape(m, h, w, c)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, _ = input_shape
        k = self.kernel_size
        return (h - k + 1, w - k + 1, self.params["W"].shape[-1])


class MaxPool2D(Layer):
    """Max-pooling over non-overlapping p x p blocks of (m, H, W, C) input.

    Rows and columns that do not fill a whole block are dropped (as PyTorch's floor mode).
    The forward pass is a reshape to (m, H/p, p, W/p, p, C) and a max over the two block
    axes; the backward pass routes each block's gradient to the input(s) equal to its
    maximum. (A tie sends the gradient to every tied input; ties need equal real values,
    which in practice means ReLU zeros, where the activation's derivative is 0 anyway.)
    """

    def __init__(self, pool_size: int) -> None:
        super().__init__()
        self.pool_size = pool_size

    def _blocks(self, x: np.ndarray) -> np.ndarray:
        """A (m, H/p, p, W/p, p, C) view of x's whole blocks (no copy)."""
        p = self.pool_size
        m, h, w, c = x.shape
        return x[:, : h - h % p, : w - w % p].reshape(m, h // p, p, w // p, p, c)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        p = self.pool_size
        if x.shape[1] < p or x.shape[2] < p:
            raise ValueError(
                f"a {p}x{p} max-pool does not fit a {x.shape[1]}x{x.shape[2]} feature map"
            )
        out = self._blocks(x).max(axis=(2, 4))
        if training:
            self._x, self._out = x, out
        return out

    def backward(self, grad: np.ndarray) -> np.ndarray:
        blocks = self._blocks(self._x)
        is_max = blocks == self._out[:, :, None, :, None, :]
        dx = np.zeros_like(self._x)
        self._blocks(dx)[...] = is_max * grad[:, :, None, :, None, :]
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, c = input_shape
        p = self.pool_size
        return (h // p, w // p, c)


class Dropout(Layer):
    """Inverted dropout (chapter 3): in training, keep each input with probability 1 - rate
    and scale the survivors by 1 / (1 - rate), so that nothing changes at prediction time.
    """

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1); got {rate}")
        self.rate = rate
        self.rng = rng

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        keep = 1.0 - self.rate
        self._mask = (self.rng.random(x.shape, dtype=np.float64) < keep).astype(x.dtype)
        self._mask /= x.dtype.type(keep)
        return x * self._mask

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad if self._mask is None else grad * self._mask


class Flatten(Layer):
    """(m, H, W, C) -> (m, H*W*C)."""

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self._x_shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad: np.ndarray) -> np.ndarray:
        return grad.reshape(self._x_shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)


__all__ = ["Layer", "Dense", "Conv2D", "MaxPool2D", "Dropout", "Flatten", "Identity"]
