"""The optimised training path learns what the plain mathematics says it should.

* float32 (the default, fast) and float64 runs with the same seed give the same learning
  curves within float32 noise, for the MLP and the CNN on sklearn's digits;
* mini-batch SGD steps of :class:`pipeline.nn.Network` (reused work buffers, fused output
  delta, the fused convolution + max-pool with the activation after the max, the bias as a
  column of the convolution's matrix, one strided view and one product per convolution,
  the halves of a batch in two threads, a dense layer's BP4 and plain SGD step in one
  product) equal, in float64, the same steps written out plainly as in the book
  (:mod:`pipeline.nn.reference`), batch after batch.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from pipeline import CNNClassifier, MLPClassifier
from pipeline.nn import (
    SGD,
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    Network,
    Regularizer,
    get_activation,
    get_cost,
    network,
)
from pipeline.nn.reference import reference_of


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)


ESTIMATORS = {
    "mlp-sigmoid-cross-entropy": lambda dtype: MLPClassifier(
        (30,), learning_rate=0.5, batch_size=10, epochs=8, random_state=1, dtype=dtype
    ),
    "mlp-relu-softmax-momentum-l2-dropout": lambda dtype: MLPClassifier(
        (30,),
        activation="relu",
        cost="log_likelihood",
        learning_rate=0.1,
        momentum=0.5,
        l2=1.0,
        dropout=0.2,
        batch_size=16,
        epochs=8,
        random_state=2,
        dtype=dtype,
    ),
    "cnn": lambda dtype: CNNClassifier(
        conv_layers=((8, 3, 2),),
        hidden_layer_sizes=(30,),
        learning_rate=0.1,
        batch_size=16,
        epochs=6,
        random_state=3,
        dtype=dtype,
    ),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_float32_and_float64_learning_curves_agree(name, digits):
    X_train, X_val, y_train, y_val = digits
    fitted = {
        dtype: ESTIMATORS[name](dtype).fit(X_train, y_train, validation_data=(X_val, y_val))
        for dtype in ("float32", "float64")
    }
    f32, f64 = fitted["float32"], fitted["float64"]
    assert f32.network_.weights[0].dtype == np.float32
    assert f64.network_.weights[0].dtype == np.float64
    # Training loss per epoch: float32 rounding only (observed ~1e-7 relative).
    np.testing.assert_allclose(f32.loss_curve_, f64.loss_curve_, rtol=1e-3)
    np.testing.assert_allclose(f32.validation_loss_curve_, f64.validation_loss_curve_, rtol=1e-3)
    # Validation accuracy: at most one image of the 450 classified differently per epoch.
    np.testing.assert_allclose(
        f32.validation_scores_, f64.validation_scores_, rtol=0, atol=1.5 / len(y_val)
    )
    assert f32.loss_curve_[-1] < 0.5 * f32.loss_curve_[0]  # it did learn


# --- the plain mathematics, batch after batch ----------------------------------------------
def mlp_network(rng):
    f64 = np.float64
    layers = [
        Dense(64, 20, get_activation("sigmoid"), rng, "scaled", f64),
        Dense(20, 10, get_activation("softmax"), rng, "scaled", f64),
    ]
    return layers, (64,)


def cnn_network(rng):
    f64 = np.float64
    layers = [
        Conv2D(1, 4, 3, get_activation("relu"), rng, "scaled", f64),
        MaxPool2D(2),
        Flatten(),
        Dense(3 * 3 * 4, 12, get_activation("relu"), rng, "scaled", f64),
        Dense(12, 10, get_activation("softmax"), rng, "scaled", f64),
    ]
    return layers, (8, 8, 1)


def two_conv_network(rng):
    """Two convolutions, small: the first fused with its pool, the second not pooled (a
    plain Conv2D) and passing dC/dx back to the fused one."""
    f64 = np.float64
    layers = [
        Conv2D(1, 3, 3, get_activation("relu"), rng, "scaled", f64),  # 8x8 -> 6x6
        MaxPool2D(2),  # 3x3
        Conv2D(3, 4, 2, get_activation("tanh"), rng, "scaled", f64),  # 2x2, not pooled
        Flatten(),
        Dense(16, 10, get_activation("softmax"), rng, "scaled", f64),
    ]
    return layers, (8, 8, 1)


@pytest.mark.parametrize("workers", [1, 2], ids=["one-thread", "halves-in-two-threads"])
@pytest.mark.parametrize(
    "build", [mlp_network, cnn_network, two_conv_network], ids=["mlp", "cnn", "cnn2"]
)
@pytest.mark.parametrize(
    ("momentum", "l2", "fused"),
    [(0.0, 0.0, False), (0.6, 2.0, False), (0.0, 0.0, True), (0.0, 2.0, True), (0.6, 2.0, True)],
    ids=["sgd", "momentum-l2", "sgd-fused", "sgd-l2-fused", "momentum-l2-fused"],
)
def test_sgd_steps_match_the_plain_mathematics(
    build, momentum, l2, fused, workers, digits, monkeypatch
):
    """``fused``: every dense layer counts as large and steps run one BLAS thread, so dense
    weights take the fused step, dC/dW added by one product into W or the velocity."""
    added = []
    add = Dense.add_weight_gradient
    spy = lambda self, *args: added.append(args) or add(self, *args)  # noqa: E731
    monkeypatch.setattr(Dense, "add_weight_gradient", spy)
    if fused:
        monkeypatch.setattr(network, "FUSED_STEP_PARAMETER", 1)
    with threadpool_limits(limits=1) if fused else nullcontext():
        check_sgd_steps(build, momentum, l2, workers, digits)
    assert bool(added) == fused


def check_sgd_steps(build, momentum, l2, workers, digits):
    X_train, _, y_train, _ = digits
    rng = np.random.default_rng(0)
    layers, shape = build(rng)
    net = Network(layers, get_cost("log_likelihood"), Regularizer(l2=l2), workers=workers)
    reference = reference_of(net)  # its own copy of the same initial weights
    optimizer = SGD(0.3, momentum=momentum)
    n = len(X_train)
    X = X_train.reshape(-1, *shape)
    Y = np.eye(10)[y_train]
    start = 0
    # Batch sizes change (as the last batch of an epoch does), so work buffers are
    # reallocated and reused in both directions; 7 and 1 are below the size that is split.
    for size in [16, 16, 7, 16, 1, 9, 16]:
        x, y = X[start : start + size], Y[start : start + size]
        start += size
        a = net.train_batch(x, y, n, optimizer)
        expected_a = reference.sgd_step(x, y, 0.3, momentum, n)
        np.testing.assert_allclose(a, expected_a, rtol=1e-10, atol=1e-13)
        for name, value in net.get_state().items():
            expected = reference.get_state()[name]
            np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-12, err_msg=name)
    # Prediction (new arrays, no buffers) agrees with the reference forward pass too.
    np.testing.assert_allclose(
        net.forward(X[:50]), reference.forward(X[:50]), rtol=1e-10, atol=1e-13
    )
    assert (net._twin is not None) == (workers == 2 and build is not mlp_network)
    net.release_buffers()
