"""The optimised training path learns what the plain mathematics says it should.

* float32 (the default, fast) and float64 runs with the same seed give the same learning
  curves within float32 noise, for the MLP and the CNN on sklearn's digits;
* mini-batch SGD steps of :class:`pipeline.nn.Network` (reused work buffers, fused output
  delta, max-pool before the activation, the bias as a column of the convolution's matrix,
  one strided view and one product per convolution) equal, in float64, the same steps
  written out plainly as in the book, one formula per line, batch after batch.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

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
)


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
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sgd_update(params, grads, velocity, eta, mu, l2, n):
    """w -> w + v, v = mu v - eta (dC/dw + (l2/n) w) for weights; biases unpenalised."""
    for key, g in grads.items():
        if key.endswith(".W"):
            g = g + (l2 / n) * params[key]
        velocity[key] = mu * velocity.get(key, 0.0) - eta * g
        params[key] = params[key] + velocity[key]


def reference_mlp_grads(p, x, y):
    """[n, h, k] sigmoid hidden layer, softmax outputs, log-likelihood cost (network2.py)."""
    z1 = x @ p["0.W"] + p["0.b"]
    a1 = sigmoid(z1)
    a2 = softmax(a1 @ p["1.W"] + p["1.b"])
    d2 = (a2 - y) / len(x)  # BP1 for softmax + log-likelihood, batch mean
    d1 = (d2 @ p["1.W"].T) * a1 * (1 - a1)  # BP2
    return {"0.W": x.T @ d1, "0.b": d1.sum(0), "1.W": a1.T @ d2, "1.b": d2.sum(0)}, a2


def reference_cnn_grads(p, x, y):
    """conv (ReLU) -> 2x2 max-pool -> flatten -> dense (ReLU) -> dense (softmax), the ReLU
    applied before pooling and the convolution computed from its definition."""
    K, b = p["0.W"], p["0.b"]
    k = K.shape[0]
    windows = sliding_window_view(x, (k, k), axis=(1, 2))  # (m, H', W', C, k, k)
    z = np.einsum("nijcpq,pqcf->nijf", windows, K) + b
    a = np.maximum(z, 0)
    m, h, w, f = a.shape
    blocks = a.reshape(m, h // 2, 2, w // 2, 2, f)
    pooled = blocks.max(axis=(2, 4))
    flat = pooled.reshape(m, -1)
    z3 = flat @ p["3.W"] + p["3.b"]
    a3 = np.maximum(z3, 0)
    a4 = softmax(a3 @ p["4.W"] + p["4.b"])
    d4 = (a4 - y) / m
    d3 = (d4 @ p["4.W"].T) * (z3 > 0)
    d_pooled = (d3 @ p["3.W"].T).reshape(pooled.shape)
    is_max = blocks == pooled[:, :, None, :, None, :]
    d_a = (is_max * d_pooled[:, :, None, :, None, :]).reshape(a.shape)
    dz = d_a * (z > 0)
    grads = {
        "0.W": np.einsum("nijcpq,nijf->pqcf", windows, dz),
        "0.b": dz.sum(axis=(0, 1, 2)),
        "3.W": flat.T @ d3,
        "3.b": d3.sum(0),
        "4.W": a3.T @ d4,
        "4.b": d4.sum(0),
    }
    return grads, a4


def mlp_network(rng):
    f64 = np.float64
    layers = [
        Dense(64, 20, get_activation("sigmoid"), rng, "scaled", f64),
        Dense(20, 10, get_activation("softmax"), rng, "scaled", f64),
    ]
    return layers, reference_mlp_grads, (64,)


def cnn_network(rng):
    f64 = np.float64
    layers = [
        Conv2D(1, 4, 3, get_activation("relu"), rng, "scaled", f64),
        MaxPool2D(2),
        Flatten(),
        Dense(3 * 3 * 4, 12, get_activation("relu"), rng, "scaled", f64),
        Dense(12, 10, get_activation("softmax"), rng, "scaled", f64),
    ]
    return layers, reference_cnn_grads, (8, 8, 1)


@pytest.mark.parametrize("build", [mlp_network, cnn_network], ids=["mlp", "cnn"])
@pytest.mark.parametrize(("momentum", "l2"), [(0.0, 0.0), (0.6, 2.0)])
def test_sgd_steps_match_the_plain_mathematics(build, momentum, l2, digits):
    X_train, _, y_train, _ = digits
    rng = np.random.default_rng(0)
    layers, reference_grads, shape = build(rng)
    net = Network(layers, get_cost("log_likelihood"), Regularizer(l2=l2))
    params = net.get_state()  # the reference's own copy of the same initial weights
    velocity: dict[str, np.ndarray] = {}
    optimizer = SGD(0.3, momentum=momentum)
    n = len(X_train)
    X = X_train.reshape(-1, *shape)
    Y = np.eye(10)[y_train]
    start = 0
    # Batch sizes change (as the last batch of an epoch does), so work buffers are
    # reallocated and reused in both directions.
    for size in [16, 16, 7, 16, 1, 16, 16]:
        x, y = X[start : start + size], Y[start : start + size]
        start += size
        a = net.train_batch(x, y, n, optimizer)
        grads, expected_a = reference_grads(params, x, y)
        np.testing.assert_allclose(a, expected_a, rtol=1e-10, atol=1e-13)
        sgd_update(params, grads, velocity, 0.3, momentum, l2, n)
        for name, value in net.get_state().items():
            np.testing.assert_allclose(value, params[name], rtol=1e-9, atol=1e-12, err_msg=name)
    # Prediction (new arrays, no buffers) agrees with the reference forward pass too.
    np.testing.assert_allclose(
        net.forward(X[:50]), reference_grads(params, X[:50], Y[:50])[1], rtol=1e-10, atol=1e-13
    )
