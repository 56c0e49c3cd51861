"""Layers of the book's networks, each working on a whole mini-batch at once.

Every layer has ``forward(x, training)``, which in training caches what the backward pass
needs (nothing is kept at prediction time, so predicting on many images holds no memory), and
``backward(grad)``, which takes dC/d(output) for the mini-batch and returns dC/d(input),
filling ``grads`` for the layer's own parameters on the way (BP2-BP4). Parameterised layers
expose ``params`` and ``grads`` as dicts of arrays with the same keys, updated in place.

Images travel as (m, height, width, channels) arrays ("NHWC"), so that a convolution is one
strided view of the input and one matrix product with the filters.

In training, the arrays a layer computes live in work buffers that it allocates on the first
mini-batch and reuses for every following one of the same size (``Layer._buffer``): the hot
loop allocates no large array. So an array returned by ``forward(x, training=True)`` or by
``backward`` is valid until the layer's next training pass; at prediction time
(``training=False``) every result is a new array.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from pipeline.nn.activations import Activation, Identity
from pipeline.nn.initializers import init_biases, init_weights


def _new_array(
    name: str, shape: tuple[int, ...], dtype: np.dtype, fill: float | None = None
) -> np.ndarray:
    """A fresh array, with the signature of :meth:`Layer._buffer` (prediction keeps nothing)."""
    return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)


def _activation_out(layer: Layer, name: str, like: np.ndarray) -> np.ndarray | None:
    """The training buffer for sigma(z) or sigma'-times-gradient shaped like ``like``; None
    for the identity, which returns its input itself."""
    if isinstance(layer.activation, Identity):
        return None
    return layer._buffer(name, like.shape, like.dtype)


class Layer:
    """A layer without parameters; subclasses with parameters fill ``params``/``grads``."""

    # Attributes that hold the last training pass (caches for backward), not the model.
    _transient: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._buffers: dict[str, np.ndarray] = {}

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray:
        """dC/d(input) from dC/d(output); ``input_grad=False`` (the network's first layer)
        lets a layer skip computing it."""
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one sample's output given one sample's input shape."""
        return input_shape

    def _buffer(
        self, name: str, shape: tuple[int, ...], dtype: np.dtype, fill: float | None = None
    ) -> np.ndarray:
        """The work array ``name``: allocated on first use (filled with ``fill`` then, if
        given) and reused while the mini-batch shape stays the same."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[name] = _new_array(name, shape, dtype, fill)
        return buf

    def _arrays(self, training: bool):
        """Where this pass gets its arrays: reused buffers in training, new ones otherwise."""
        return self._buffer if training else _new_array

    def release_buffers(self) -> None:
        """Drop the work buffers and the last training pass's caches (memory, not state)."""
        self._buffers = {}
        for key in self._transient:
            self.__dict__.pop(key, None)

    # Pickling keeps the parameters, not the work buffers and caches of the last batch.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_buffers", *self._transient):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        state.pop("needs_input_grad", None)  # a flag of pickles from before fuse()
        self.__dict__.update(state)
        self._buffers = {}

    def replica(self) -> Layer:
        """A twin for a second thread: the same parameter arrays, its own gradient arrays
        and work buffers (so two halves of a mini-batch can run at once)."""
        twin = copy.copy(self)  # through __getstate__: no buffers, no caches
        twin.grads = {key: np.zeros_like(g) for key, g in self.grads.items()}
        return twin


class Dense(Layer):
    """Fully connected layer: z = x W + b, a = sigma(z).

    W has shape (n_in, n_out), so a mini-batch x of shape (m, n_in) maps to (m, n_out) in one
    matrix product (the book's w is our W transposed).
    """

    _transient = ("_x", "_z", "_a", "_delta")

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

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        W, b = self.params["W"], self.params["b"]
        array = self._arrays(training)
        shape = (len(x), W.shape[1])
        z = np.matmul(x, W, out=array("z", shape, W.dtype))
        z += b
        if not training:
            return self.activation.fn(z, out=z)  # in place: z is not needed again
        a = self.activation.fn(z, out=_activation_out(self, "a", z))
        self._x, self._z, self._a = x, z, a
        return a

    def backward(
        self, grad: np.ndarray, input_grad: bool = True, weight_grad: bool = True
    ) -> np.ndarray:
        """BP2: delta = dC/da (.) sigma'(z), then :meth:`backward_delta`."""
        delta = self.activation.backward(
            self._z, self._a, grad, out=_activation_out(self, "delta", grad)
        )
        return self.backward_delta(delta, input_grad, weight_grad)

    def backward_delta(
        self, delta: np.ndarray, input_grad: bool = True, weight_grad: bool = True
    ) -> np.ndarray:
        """Gradients from this layer's error delta = dC/dz, shape (m, n_out).

        BP3: dC/db = sum over the batch of delta.  BP4: dC/dW = x^T delta; with
        ``weight_grad=False`` BP4 is left to :meth:`add_weight_gradient` (``grads["W"]`` is
        not written), which computes it inside the SGD step.
        Returns dC/dx = delta W^T, the first factor of BP2 for the layer below (an empty
        array without ``input_grad``: the network's first layer skips that product).
        """
        if weight_grad:
            np.matmul(self._x.T, delta, out=self.grads["W"])
        else:
            self._delta = delta
        np.add.reduce(delta, axis=0, out=self.grads["b"])
        if not input_grad:
            return delta[:, :0]
        W = self.params["W"]
        dx = self._buffer("dx", (len(delta), W.shape[0]), W.dtype)
        if len(delta) > SMALL_BATCH:
            return np.matmul(delta, W.T, out=dx)
        # A few rows: OpenBLAS computes (W delta^T) ~1.5x faster than delta W^T (measured
        # with W 2880x100 at batch 10), even with the transposing copy after it.
        dx_t = np.matmul(W, delta.T, out=self._buffer("dx_t", dx.shape[::-1], W.dtype))
        np.copyto(dx, dx_t.T)
        return dx

    def add_weight_gradient(
        self, target: np.ndarray, alpha: float, beta: float = 1.0, rows: slice = slice(None)
    ) -> None:
        """BP4 for a backward pass with ``weight_grad=False``, added into ``target`` in place:

            target -> beta * target + alpha * (x^T delta)[rows]

        ``target`` is shaped like W[rows], C-contiguous: W itself for a plain SGD step
        (alpha = -eta, beta = 1 - eta lambda / n), or the momentum velocity (beta = mu); see
        :meth:`~pipeline.nn.optimizers.SGD.fused_step`. One BLAS gemm does it: ``target`` is
        read and written once and dC/dW is never stored. ``rows`` is a block of W's rows (one
        thread's share); a second call with beta 1 adds another part of the batch, e.g. the
        other half's.
        """
        x = self._x[:, rows]
        # target^T (Fortran order) -> beta target^T + alpha delta^T x, in its own memory.
        result = _gemm(target.dtype)(
            alpha, self._delta.T, x.T, beta=beta, c=target.T, trans_b=1, overwrite_c=1
        )
        if not np.shares_memory(result, target):  # scipy copied it: the step would be lost
            raise RuntimeError("the weight gradient was not added in place")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.params["W"].shape[1],)


SMALL_BATCH = 16  # Dense.backward_delta: up to this many rows, dC/dx as (W delta^T)^T


@functools.cache
def _gemm(dtype: np.dtype):
    """BLAS gemm (C -> alpha op(A) op(B) + beta C) for ``dtype``, from scipy: NumPy's own
    products cannot add into an existing array. (scipy ships its own OpenBLAS:
    :mod:`pipeline.nn.threads` limits it with NumPy's.)"""
    from scipy.linalg.blas import get_blas_funcs

    return get_blas_funcs("gemm", dtype=dtype)


def _window_view(x: np.ndarray, k: int) -> np.ndarray:
    """The read-only (m, H', W', C, k, k) view of the k x k windows of x (m, H, W, C):
    ``sliding_window_view(x, (k, k), axis=(1, 2))``, built directly (~20x less Python
    overhead, which counts at the book's batch size 10)."""
    m, h, w, c = x.shape
    s_n, s_h, s_w, s_c = x.strides
    shape, strides = (m, h - k + 1, w - k + 1, c, k, k), (s_n, s_h, s_w, s_c, s_h, s_w)
    if not x.flags.c_contiguous:  # no buffer to build on
        return as_strided(x, shape, strides, writeable=False)
    view = np.ndarray(shape, x.dtype, x, 0, strides)
    view.flags.writeable = False
    return view


def _windows(x: np.ndarray, k: int, array, name: str, ones: bool, block: int = 1) -> np.ndarray:
    """The k x k windows of x (m, H, W, C) as the rows of a matrix, each row in (p, q, c)
    order followed by a 1 if ``ones``: one strided view, one copy.

    Rows come in (n, i, j) order of the output position (i, j) of sample n, so the matrix
    is (m*H'*W', k*k*C [+ 1]). With ``block`` = s > 1 they are grouped by the position's
    offset in s x s blocks instead: (a, b, n, i', j') for position (s*i' + a, s*j' + b), and
    positions outside whole blocks are left out (a following s x s max-pool drops them).

    The copy runs fastest over long contiguous stretches of x. With several channels a
    window row (q, c) is k*C contiguous numbers, so the matrix is built row by row. With one
    channel that stretch is only k long, but each (p, q) column of the matrix is a shifted
    copy of the image, many pixels at a time: then the transposed matrix is built
    (row-major) and returned as its transpose view, which BLAS reads just as fast.
    """
    m, h, w, c = x.shape
    s = block
    hs, ws = (h - k + 1) // s, (w - k + 1) // s  # whole blocks (s = 1: every position)
    kkc, rows = k * k * c, s * s * m * hs * ws
    view = _window_view(x, k)  # (m, H', W', C, k, k), no copy
    view = view[:, : hs * s, : ws * s].reshape(m, hs, s, ws, s, c, k, k)  # still no copy
    width = kkc + int(ones)
    if c == 1:
        cols_t = array(name, (width, rows), x.dtype)
        target = cols_t[:kkc].reshape(k, k, c, s, s, m, hs, ws)
        np.copyto(target, view.transpose(6, 7, 5, 2, 4, 0, 1, 3))
        cols_t[kkc:] = 1
        return cols_t.T
    cols = array(name, (rows, width), x.dtype)
    target = cols[:, :kkc].reshape(s, s, m, hs, ws, k, k, c)
    np.copyto(target, view.transpose(2, 4, 0, 1, 3, 6, 7, 5))
    cols[:, kkc:] = 1
    return cols


class Conv2D(Layer):
    """Valid 2-D convolution, stride 1, followed by an activation.

    Input (m, H, W, C), filters K of shape (k, k, C, F), output (m, H-k+1, W-k+1, F):
    z[n, i, j, f] = sum_{p, q, c} x[n, i+p, j+q, c] K[p, q, c, f] + b[f]  (a cross-correlation,
    as in the book's network3.py and every deep-learning library).

    Forward: the k x k windows of x come from one strided view; copying them into rows, with a
    constant 1 appended to each, gives a (m*H'*W', k*k*C + 1) matrix, and one product with K
    reshaped to (k*k*C, F) and b appended as a last row gives z (the bias is the weight of a
    constant input).
    Backward: the same product transposed, windows^T delta, gives dC/dK in its first k*k*C
    rows (BP4 summed over positions) and dC/db = the sum of delta in its last (BP3); dC/dx
    is delta K^T, the error of every window, added back onto the window's pixels (col2im:
    k*k strided additions, one per kernel offset).
    """

    _transient = ("_cols", "_x_shape", "_z", "_a")
    _block = 1  # positions grouped by offset in s x s blocks (s > 1 in ConvPool2D)

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

    def __setstate__(self, state: dict) -> None:
        # Pickles written before fuse() existed carry the Network's old in-place fusion: a
        # ``block`` and the identity here, the pool holding sigma. Without the block the pair
        # computes the same function (sigma after the max), and fuse() fuses it again.
        state.pop("block", None)
        super().__setstate__(state)

    def _kernel_matrix(self, array) -> np.ndarray:
        """[K reshaped to (k*k*C, F); b]: shape (k*k*C + 1, F)."""
        kernel, b = self.params["W"], self.params["b"]
        f = kernel.shape[-1]
        matrix = array("kernel", (kernel.size // f + 1, f), kernel.dtype)
        matrix[:-1] = kernel.reshape(-1, f)
        matrix[-1] = b
        return matrix

    def _linear(self, x: np.ndarray, array) -> tuple[np.ndarray, np.ndarray]:
        """(windows matrix, z as its rows): z is (m*H'*W', F), or with ``_block`` = s > 1
        (s*s*m*(H'/s)*(W'/s), F), the positions of whole s x s blocks grouped by offset."""
        k, s = self.kernel_size, self._block
        _, h, w, _ = x.shape
        if h < k or w < k:
            raise ValueError(f"a {k}x{k} convolution does not fit a {h}x{w} input image")
        if h - k + 1 < s or w - k + 1 < s:
            raise ValueError(
                f"a {s}x{s} max-pool does not fit a {h - k + 1}x{w - k + 1} feature map"
            )
        cols = _windows(x, k, array, "cols", ones=True, block=s)
        kernel = self._kernel_matrix(array)
        z = np.matmul(cols, kernel, out=array("z", (len(cols), kernel.shape[1]), kernel.dtype))
        return cols, z

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        cols, z = self._linear(x, self._arrays(training))
        z = z.reshape(len(x), *self.output_shape(x.shape[1:]))
        if not training:
            return self.activation.fn(z, out=z)
        a = self.activation.fn(z, out=_activation_out(self, "a", z))
        self._cols, self._x_shape, self._z, self._a = cols, x.shape, z, a
        return a

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray:
        delta = self.activation.backward(  # BP2 for this layer
            self._z, self._a, grad, out=_activation_out(self, "delta", grad)
        )
        return self._backward_linear(delta, input_grad)

    def _backward_linear(self, delta: np.ndarray, input_grad: bool) -> np.ndarray:
        """Gradients from delta = dC/dz, laid out as :meth:`_linear`'s z; returns dC/dx."""
        kernel = self.params["W"]
        k, _, c, f = kernel.shape
        grad_matrix = np.matmul(  # BP4 and, in the last row, BP3
            self._cols.T,
            delta.reshape(-1, f),
            out=self._buffer("grad_kernel", (k * k * c + 1, f), delta.dtype),
        )
        self.grads["W"][...] = grad_matrix[:-1].reshape(kernel.shape)
        self.grads["b"][...] = grad_matrix[-1]
        if not input_grad:
            return delta[..., :0]
        # dC/dx (col2im): each window's error, delta K^T, spread back over the window's
        # k x k pixels: k*k additions, one per kernel offset (p, q), each over all windows
        # at once. With delta in position order (n, i, j) and one product per offset, every
        # addition reads a contiguous (m, H', W', C) array. (Positions outside whole pooling
        # blocks were left out of the windows: they have no error.)
        m, h, w, _ = self._x_shape
        s = self._block
        hs, ws = (h - k + 1) // s, (w - k + 1) // s
        if s > 1:  # (s, s, m, hs, ws, F) -> (m, hs*s, ws*s, F)
            ordered = self._buffer("delta_ordered", (m, hs, s, ws, s, f), delta.dtype)
            np.copyto(ordered, delta.reshape(s, s, m, hs, ws, f).transpose(2, 3, 0, 4, 1, 5))
            delta = ordered
        rows = m * hs * s * ws * s
        window_grads = np.matmul(  # [delta K[p, q]^T for every (p, q)]: (k*k, rows, C)
            delta.reshape(1, rows, f),
            kernel.reshape(k * k, c, f).transpose(0, 2, 1),
            out=self._buffer("window_grads", (k * k, rows, c), delta.dtype),
        ).reshape(k, k, m, hs * s, ws * s, c)
        dx = self._buffer("dx", (m, h, w, c), delta.dtype)
        dx.fill(0.0)
        for p in range(k):
            for q in range(k):
                dx[:, p : p + hs * s, q : q + ws * s] += window_grads[p, q]
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, _ = input_shape
        k = self.kernel_size
        return (h - k + 1, w - k + 1, self.params["W"].shape[-1])


def _max_over_axis(x: np.ndarray, axis: int, out: np.ndarray) -> np.ndarray:
    """out = the maximum of x over ``axis`` (of length p, the pool size), as p - 1
    element-wise maxima: numpy's own reduction over a short strided axis is ~3x slower."""
    slices = x if axis == 0 else np.moveaxis(x, axis, 0)
    if len(slices) == 1:
        np.copyto(out, slices[0])
        return out
    np.maximum(slices[0], slices[1], out=out)
    for s in slices[2:]:
        np.maximum(out, s, out=out)
    return out


class MaxPool2D(Layer):
    """Max-pooling over non-overlapping p x p blocks of (m, H, W, C) input, optionally
    followed by an activation.

    Rows and columns that do not fill a whole block are dropped (as PyTorch's floor mode).
    The forward pass views the input as (m, H/p, p, W/p, p, C) blocks (a reshape, no copy)
    and takes the maximum over the two block axes; the backward pass routes each block's
    gradient to the input(s) equal to its maximum. (A tie sends the gradient to every tied
    input; ties need equal real values, which in practice means inputs that are exactly 0.)

    The network runs a :class:`Conv2D` followed by a pool as one :class:`ConvPool2D` (see
    :func:`fuse`); this layer is the pool on its own.
    """

    _transient = ("_x", "_out", "_a")

    def __init__(self, pool_size: int, activation: Activation | None = None) -> None:
        super().__init__()
        self.pool_size = pool_size
        self.activation = activation if activation is not None else Identity()

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
        array = self._arrays(training)
        blocks = self._blocks(x)
        m, hp, _, wp, _, c = blocks.shape
        # The maximum over the block's rows (axis 2), then over its columns.
        rows_max = _max_over_axis(blocks, 2, array("rows_max", (m, hp, wp, p, c), x.dtype))
        out = _max_over_axis(rows_max, 3, array("out", (m, hp, wp, c), x.dtype))
        if not training:
            return self.activation.fn(out, out=out)
        a = self.activation.fn(out, out=_activation_out(self, "a", out))
        self._x, self._out, self._a = x, out, a
        return a

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray:
        delta = self.activation.backward(  # sigma' of the pooled maxima, if any
            self._out, self._a, grad, out=_activation_out(self, "delta", grad)
        )
        blocks = self._blocks(self._x)
        is_max = np.equal(
            blocks,
            self._out[:, :, None, :, None, :],
            out=self._buffer("is_max", blocks.shape, np.dtype(bool)),
        )
        # Rows/columns outside whole blocks get no gradient: zeroed once, never written.
        dx = self._buffer("dx", self._x.shape, self._x.dtype, fill=0.0)
        np.multiply(is_max, delta[:, :, None, :, None, :], out=self._blocks(dx))
        return dx

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, c = input_shape
        p = self.pool_size
        return (h // p, w // p, c)


class ConvPool2D(Conv2D):
    """A :class:`Conv2D` and the p x p :class:`MaxPool2D` after it, computed as one layer:
    a = sigma(max over each block of z), z the convolution.

    The same function as the two layers in turn, max(sigma(z)) = sigma(max(z)) for a
    non-decreasing sigma, with two savings: sigma and sigma' are applied to p*p times fewer
    numbers, and the convolution's rows come grouped by the position's offset in the blocks,
    (p, p, m, H'/p, W'/p, F), so the maximum compares p*p contiguous slabs element by element
    (several times faster than strided blocks). Built by :func:`fuse`; it holds the
    convolution's own ``params`` and ``grads`` dicts (the same arrays), so training it trains
    the convolution.
    """

    _transient = (*Conv2D._transient, "_out")

    def __init__(self, conv: Conv2D, pool_size: int, activation: Activation) -> None:
        Layer.__init__(self)
        self.params, self.grads = conv.params, conv.grads
        self.kernel_size = conv.kernel_size
        self.pool_size = self._block = pool_size
        self.activation = activation

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        array = self._arrays(training)
        cols, z = self._linear(x, array)
        p = self.pool_size
        slabs = z.reshape(p * p, len(x), *self.output_shape(x.shape[1:]))
        out = _max_over_axis(slabs, 0, array("out", slabs.shape[1:], z.dtype))
        if not training:
            return self.activation.fn(out, out=out)
        a = self.activation.fn(out, out=_activation_out(self, "a", out))
        self._cols, self._x_shape, self._z, self._out, self._a = cols, x.shape, slabs, out, a
        return a

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray:
        delta = self.activation.backward(  # BP2 at the pooled maxima
            self._out, self._a, grad, out=_activation_out(self, "delta", grad)
        )
        # The error goes to the position(s) of each block's maximum.
        is_max = np.equal(
            self._z, self._out, out=self._buffer("is_max", self._z.shape, np.dtype(bool))
        )
        dz = np.multiply(is_max, delta, out=self._buffer("dz", self._z.shape, delta.dtype))
        return self._backward_linear(dz, input_grad)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        h, w, f = super().output_shape(input_shape)
        p = self.pool_size
        return (h // p, w // p, f)


def _activation_after_max(conv: Activation, pool: Activation) -> Activation | None:
    """The one activation a fused conv + pool applies after the maximum, or None when the
    pair cannot be fused (a non-monotone conv activation, or activations on both)."""
    if isinstance(conv, Identity):
        return pool
    if conv.monotone and isinstance(pool, Identity):
        return conv
    return None


def fuse(layers: list[Layer]) -> list[Layer]:
    """The layers as a network runs them: every :class:`Conv2D` directly followed by a
    :class:`MaxPool2D` becomes one new :class:`ConvPool2D` (sharing the convolution's
    parameter arrays); the other layers are returned as they are. Nothing given is modified."""
    stack: list[Layer] = []
    i = 0
    while i < len(layers):
        layer, after = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if type(layer) is Conv2D and type(after) is MaxPool2D:
            activation = _activation_after_max(layer.activation, after.activation)
            if activation is not None:
                stack.append(ConvPool2D(layer, after.pool_size, activation))
                i += 2
                continue
        stack.append(layer)
        i += 1
    return stack


class Dropout(Layer):
    """Inverted dropout (chapter 3): in training, keep each input with probability 1 - rate
    and scale the survivors by 1 / (1 - rate), so that nothing changes at prediction time.

    A network that splits a mini-batch across two threads draws the whole batch's mask
    first (:meth:`draw_mask`) and hands each half its rows (:meth:`use_mask`): the same
    draws, in the same order, as one thread makes.
    """

    _transient = ("_mask", "_given_mask")

    def __init__(self, rate: float, rng: np.random.Generator) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1); got {rate}")
        self.rate = rate
        self.rng = rng

    def draw_mask(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The scaled keep-mask for a training batch of inputs of ``shape``: 1 / (1 - rate)
        where kept, 0 where dropped (a work buffer, redrawn at the next call)."""
        keep = 1.0 - self.rate
        # Uniform draws in float64 whatever the dtype, so float32 and float64 networks with
        # the same seed drop the same neurons.
        draws = self.rng.random(dtype=np.float64, out=self._buffer("draws", shape, np.float64))
        mask = np.less(draws, keep, out=self._buffer("mask", shape, dtype))
        mask /= mask.dtype.type(keep)
        return mask

    def use_mask(self, mask: np.ndarray) -> None:
        """Apply ``mask`` (rows of a :meth:`draw_mask`) at the next training forward pass."""
        self._given_mask = mask

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        given, self._given_mask = getattr(self, "_given_mask", None), None
        if given is not None and given.shape != x.shape:
            raise ValueError(f"dropout mask of shape {given.shape} for inputs {x.shape}")
        self._mask = given if given is not None else self.draw_mask(x.shape, x.dtype)
        return np.multiply(x, self._mask, out=self._buffer("out", x.shape, x.dtype))

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray:
        if self._mask is None:
            return grad
        return np.multiply(grad, self._mask, out=self._buffer("dx", grad.shape, grad.dtype))


class Flatten(Layer):
    """(m, H, W, C) -> (m, H*W*C)."""

    _transient = ("_x_shape",)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        if training:
            self._x_shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad: np.ndarray, input_grad: bool = True) -> np.ndarray:
        return grad.reshape(self._x_shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)


LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Dense, Conv2D, MaxPool2D, ConvPool2D, Dropout, Flatten)
}
"""Every layer class by name (e.g. for a list of trusted types when loading)."""

__all__ = [
    "LAYERS",
    "ConvPool2D",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Identity",
    "Layer",
    "MaxPool2D",
    "fuse",
]
