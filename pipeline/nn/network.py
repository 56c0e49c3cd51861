"""A feed-forward network: a stack of layers, a cost on the output and a weight penalty."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

import numpy as np

from pipeline.nn import threads
from pipeline.nn.costs import Cost
from pipeline.nn.layers import Conv2D, Dense, Dropout, Layer, fuse
from pipeline.nn.optimizers import SGD
from pipeline.nn.regularizers import Regularizer

# A mini-batch is split across two threads only from this size on (halves of 8 or more):
# at batch 10 the halves' thread hand-offs cost more than they gain (measured 0.4x-0.8x).
MIN_SPLIT_BATCH = 16
# Parameters of at least this many numbers are summed and updated half in each thread.
SPLIT_PARAMETER = 65536
# A dense layer's W of at least this many numbers takes its SGD step fused with BP4
# (SGD.fused_step, Dense.add_weight_gradient): W is not passed over 7 times. Smaller ones
# gain too little.
FUSED_STEP_PARAMETER = 65536

# (value, gradient, the twin's gradient or None, is a weight, steps fused): a parameter as
# the end of a training step sees it (a whole array, or a row half of a large one).
_Entry = tuple[np.ndarray, np.ndarray, np.ndarray | None, bool, bool]


class _Arrays:
    """Parameters with their gradients, stepped the plain way: the second half's gradient
    added (for a split batch), the penalty's, the optimizer's update."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.params = [value for value, _, _, _, _ in entries]
        self.grads = [grad for _, grad, _, _, _ in entries]
        self.sums = [(grad, twin) for _, grad, twin, _, _ in entries if twin is not None]
        self.weights = [(value, grad) for value, grad, _, is_weight, _ in entries if is_weight]

    def step(self, regularizer: Regularizer, n: int, optimizer: SGD, split: bool) -> None:
        if split:
            for grad, twin in self.sums:
                grad += twin
        if regularizer.active:
            for w, g in self.weights:
                regularizer.add_gradient(w, g, n)
        optimizer.step(self.params, self.grads)


class _Part:
    """One thread's share of the end of a training step: some parameters, and the large
    dense weights among them that can take the fused step (:meth:`SGD.fused_step`), each as
    (layer, its twin or None, rows, W[rows] as in the entries)."""

    def __init__(
        self, entries: list[_Entry], fused: list[tuple[Dense, Dense | None, slice, np.ndarray]]
    ) -> None:
        self.every = _Arrays(entries)
        self.unfused = _Arrays([entry for entry in entries if not entry[4]])
        self.fused = fused

    def end_step(
        self, regularizer: Regularizer, n: int, optimizer: SGD, split: bool, fuse: bool
    ) -> None:
        if not fuse:
            self.every.step(regularizer, n, optimizer, split)
            return
        self.unfused.step(regularizer, n, optimizer, split)
        for layer, twin, rows, w in self.fused:
            add_gradient = _gradient_adder(layer, twin if split else None, rows)
            optimizer.fused_step(w, add_gradient, regularizer.l2 / n)


def _gradient_adder(layer: Dense, twin: Dense | None, rows: slice):
    """``add_gradient`` for :meth:`SGD.fused_step`: the layer's dC/dW (its rows), then the
    twin's, the second half's of a split batch (added after the first's, as unfused)."""

    def add_gradient(target: np.ndarray, alpha: float, beta: float) -> None:
        layer.add_weight_gradient(target, alpha, beta, rows)
        if twin is not None:
            twin.add_weight_gradient(target, alpha, 1.0, rows)

    return add_gradient


class Network:
    """Layers applied in order; the last layer is a :class:`Dense` output layer.

    ``train_batch`` is one step of mini-batch SGD: forward pass, output error delta^L from the
    cost (BP1), backward pass through the layers (BP2-BP4), penalty gradient, update.

    ``layers`` are kept as given (they name the parameters and are what is saved); the
    network runs :func:`~pipeline.nn.layers.fuse` of them, where a convolution and the
    max-pool after it are one :class:`~pipeline.nn.layers.ConvPool2D` sharing the
    convolution's parameters.

    ``workers``: threads a training mini-batch is split across (its two halves run at once,
    each thread with one BLAS thread; then each thread adds the halves' gradients, the
    penalty and the update for half of the parameters). None: as many as the
    BLAS thread limit in force when training starts (threadpoolctl), at most 2, for networks
    with a convolution (dense-only networks are too small per sample to gain). Dropout
    masks are drawn for the whole batch before it is split, so both ways train alike.

    Without an L1 penalty, the large dense layers' weights take their step fused with BP4
    (:meth:`~pipeline.nn.optimizers.SGD.fused_step`: dC/dW added by one BLAS product into W,
    or into the momentum velocity) when the step runs one BLAS thread (always with two
    workers); their ``grads["W"]`` is then not written by :meth:`train_batch`
    (:meth:`backprop` always writes it).
    """

    def __init__(
        self,
        layers: list[Layer],
        cost: Cost,
        regularizer: Regularizer | None = None,
        workers: int | None = None,
    ) -> None:
        if not layers or not isinstance(layers[-1], Dense):
            raise ValueError("the last layer of a Network must be a Dense output layer")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1; got {workers}")
        self.layers = layers
        self.cost = cost
        self.regularizer = regularizer or Regularizer()
        self.workers = workers
        self._build()

    def _build(self) -> None:
        """What the network derives from its layers: the fused stack it runs, and flat lists
        of the arrays the hot loop touches (built once, updated in place)."""
        self._stack = fuse(self.layers)
        # The input needs no gradient: backward stops at the first parameterised layer.
        self._first = next(i for i, layer in enumerate(self._stack) if layer.params)
        self._weights = [layer.params["W"] for layer in self.layers if "W" in layer.params]
        self._weight_grads = [layer.grads["W"] for layer in self.layers if "W" in layer.params]
        if not all(v.flags.c_contiguous and g.flags.c_contiguous for _, v, g in self.parameters()):
            raise ValueError("parameters and gradients must be C-contiguous arrays")
        splittable = any(isinstance(layer, Conv2D) for layer in self._stack)
        self._max_workers = 2 if splittable else 1
        self._fusable = {
            i
            for i, layer in enumerate(self._stack)
            if isinstance(layer, Dense) and layer.params["W"].size >= FUSED_STEP_PARAMETER
        }
        self._clear_workers()

    def _clear_workers(self) -> None:
        self._batch_workers: int | None = None  # decided at the first batch of a training run
        self._twin: list[Layer] | None = None  # the second thread's replica of the stack
        self._twin_grads: list[tuple[np.ndarray, np.ndarray]] = []
        self._parts: list[_Part] = []  # the end of a step: one part per thread
        self._may_fuse = False  # steps run one BLAS thread: the fused step may be used
        self._executor: ThreadPoolExecutor | None = None
        self._output: np.ndarray | None = None

    # Pickles keep the layers, cost, penalty and settings; the rest is rebuilt on loading.
    def __getstate__(self) -> dict:
        return {key: self.__dict__[key] for key in ("layers", "cost", "regularizer", "workers")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("workers", None)  # pickles from before the workers setting
        self._build()

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

    def layer_names(self) -> list[str | None]:
        """A name per given layer with weights (``conv1``, ``conv2``, ``dense1``, ...,
        ``output`` for the last), None for the others."""
        names: list[str | None] = []
        counts = {"conv": 0, "dense": 0}
        for i, layer in enumerate(self.layers):
            kind = "conv" if isinstance(layer, Conv2D) else "dense" if "W" in layer.params else ""
            if i == len(self.layers) - 1:
                names.append("output")
            elif kind:
                counts[kind] += 1
                names.append(f"{kind}{counts[kind]}")
            else:
                names.append(None)
        return names

    # --- forward ---------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Output activations a^L for a mini-batch x.

        In training the result is a work buffer, overwritten by the next training pass; at
        prediction time it is a new array.
        """
        return self._forward(self._stack, x, training)

    @staticmethod
    def _forward(stack: list[Layer], x: np.ndarray, training: bool) -> np.ndarray:
        for layer in stack:
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
        self._workers_for(len(x))
        with self._blas_for_step():
            a, split = self._gradients(x, y)
        if split:
            for grad, twin_grad in self._twin_grads:
                grad += twin_grad
        if self.regularizer.active:
            for w, g in zip(self._weights, self._weight_grads, strict=True):
                self.regularizer.add_gradient(w, g, n)
        return a

    def _blas_for_step(self) -> AbstractContextManager:
        """With a twin, a step runs one BLAS thread: two halves at once, each with one, or a
        batch too small to split, where one BLAS thread beats two at such small products."""
        return threads.blas_limited_to(1) if self._twin is not None else nullcontext()

    def _gradients(
        self, x: np.ndarray, y: np.ndarray, deferred: set[int] | tuple = ()
    ) -> tuple[np.ndarray, bool]:
        """(a^L, split): gradients of the batch-mean cost without the penalty; when split,
        the second half's are still in the twin's arrays, to be added. The ``deferred``
        layers (stack indices) leave BP4 to the fused step."""
        if self._workers_for(len(x)) == 2:
            return self._backprop_halves(x, y, deferred), True
        return self._backprop(self._stack, x, y, len(x), deferred), False

    def _backprop(
        self,
        stack: list[Layer],
        x: np.ndarray,
        y: np.ndarray,
        m: int,
        deferred: set[int] | tuple = (),
    ) -> np.ndarray:
        """Forward and backward through ``stack`` for the rows (x, y) of a batch of m:
        gradients of the mean cost over the m, without the penalty."""
        a = self._forward(stack, x, training=True)
        out = stack[-1]
        delta = self.cost.delta(  # BP1, per sample
            out._z, a, y, out.activation, out=out._buffer("delta", a.shape, a.dtype)
        )
        delta *= a.dtype.type(1.0 / m)  # the batch mean
        last = len(stack) - 1
        grad = out.backward_delta(
            delta, input_grad=last > self._first, weight_grad=last not in deferred
        )
        for i in range(last - 1, self._first - 1, -1):
            if i in deferred:
                grad = stack[i].backward(grad, input_grad=i > self._first, weight_grad=False)
            else:
                grad = stack[i].backward(grad, input_grad=i > self._first)
        return a

    def _backprop_halves(
        self, x: np.ndarray, y: np.ndarray, deferred: set[int] | tuple = ()
    ) -> np.ndarray:
        """The two halves of the batch at once, the second on the twin of the stack, in the
        second thread; their gradients are added afterwards, first half's + second half's (a
        fixed order, so runs repeat exactly)."""
        m = len(x)
        h = (m + 1) // 2
        self._share_dropout_masks(x.shape, x.dtype, h)
        second = self._executor.submit(self._backprop, self._twin, x[h:], y[h:], m, deferred)
        try:
            a_first = self._backprop(self._stack, x[:h], y[:h], m, deferred)
        finally:
            a_second = second.result()
        shape = (m, a_first.shape[1])
        if self._output is None or self._output.shape != shape:
            self._output = np.empty(shape, a_first.dtype)
        self._output[:h], self._output[h:] = a_first, a_second
        return self._output

    def _share_dropout_masks(self, x_shape: tuple[int, ...], dtype: np.dtype, h: int) -> None:
        """Each dropout layer's mask for the whole batch, drawn here in one thread (the
        draws of an unsplit batch): the first h rows to the layer, the rest to its twin."""
        shape = x_shape[1:]
        for layer, twin in zip(self._stack, self._twin, strict=True):
            if isinstance(layer, Dropout) and layer.rate > 0.0:
                mask = layer.draw_mask((x_shape[0], *shape), dtype)
                layer.use_mask(mask[:h])
                twin.use_mask(mask[h:])
            shape = layer.output_shape(shape)

    def _workers_for(self, m: int) -> int:
        if self._batch_workers is None:  # the first batch of a training run
            wanted = self.workers if self.workers is not None else threads.blas_threads()
            self._batch_workers = min(wanted, self._max_workers)
            self._start_run()
        return 2 if self._batch_workers >= 2 and m >= MIN_SPLIT_BATCH else 1

    def _start_run(self) -> None:
        """At the first batch of a training run: with two workers, the twin of the stack
        (own gradients and buffers, the same parameters) and the thread that runs it; the
        parameters cut into one part per thread for the end of each step."""
        two = self._batch_workers >= 2
        if two:
            self._twin = [layer.replica() for layer in self._stack]
            self._twin_grads = [
                (layer.grads[key], twin.grads[key])
                for layer, twin in zip(self._stack, self._twin, strict=True)
                for key in layer.grads
            ]
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="nn-half-batch")
        # The fused step calls scipy's BLAS: only where steps run one BLAS thread, so that
        # its thread pool and NumPy's never both run.
        self._may_fuse = two or threads.blas_threads() == 1
        self._parts = self._cut_parameters(two)

    def _cut_parameters(self, two: bool) -> list[_Part]:
        """The parameters as one part, or two (one per thread: the small arrays in the
        first, row halves of each large one in both), with the fusable dense weights."""
        twins = self._twin or [None] * len(self._stack)
        twin_of = {id(grad): twin_grad for grad, twin_grad in self._twin_grads}
        fusable = {
            id(self._stack[i].params["W"]): (self._stack[i], twins[i]) for i in self._fusable
        }
        entries: tuple[list, ...] = ([], []) if two else ([],)
        fused: tuple[list, ...] = ([], []) if two else ([],)
        for layer in self.layers:
            for key, value in layer.params.items():
                grad, twin_grad = layer.grads[key], twin_of.get(id(layer.grads[key]))
                fusing = fusable.get(id(value)) if key == "W" else None
                cuts = [(0, slice(None))]
                if two and value.size >= SPLIT_PARAMETER:  # row halves: contiguous views
                    h = len(value) // 2
                    cuts = [(0, slice(0, h)), (1, slice(h, None))]
                for k, rows in cuts:
                    twin_rows = None if twin_grad is None else twin_grad[rows]
                    entry = (value[rows], grad[rows], twin_rows, key == "W", fusing is not None)
                    entries[k].append(entry)
                    if fusing is not None:
                        fused[k].append((*fusing, rows, entry[0]))
        return [_Part(e, f) for e, f in zip(entries, fused, strict=True)]

    def train_batch(self, x: np.ndarray, y: np.ndarray, n: int, optimizer: SGD) -> np.ndarray:
        """One SGD step on the mini-batch (x, y); returns a^L from before the step.

        With two threads, each also ends the step for its part of the parameters. (The
        optimizer then keeps its per-array state, momentum, under the parts: the same
        arrays for the whole training run.)"""
        self._workers_for(len(x))  # sets the parts up at the first batch of a training run
        fuse = self._may_fuse and not self.regularizer.l1
        with self._blas_for_step():
            a, split = self._gradients(x, y, self._fusable if fuse else ())
            args = (self.regularizer, n, optimizer, split, fuse)
            if not split:
                for part in self._parts:
                    part.end_step(*args)
                return a
            second = self._executor.submit(self._parts[1].end_step, *args)
            try:
                self._parts[0].end_step(*args)
            finally:
                second.result()
        return a

    def release_buffers(self) -> None:
        """Free every layer's work buffers and the second thread (training sets them up
        again when it resumes, under the thread limit in force then)."""
        for layer in self._stack:
            layer.release_buffers()
        for layer in self.layers:
            layer.release_buffers()
        if self._executor is not None:
            self._executor.shutdown()
        self._clear_workers()

    def gradient_norms(self) -> dict[str, float]:
        """||dC/dW|| per parameterised layer after the last :meth:`backprop`, keyed by
        :meth:`layer_names` (``conv1``, ``dense1``, ``output``)."""
        return {
            name: float(np.linalg.norm(layer.grads["W"]))
            for name, layer in zip(self.layer_names(), self.layers, strict=True)
            if name is not None
        }


__all__ = ["FUSED_STEP_PARAMETER", "MIN_SPLIT_BATCH", "SPLIT_PARAMETER", "Network"]
