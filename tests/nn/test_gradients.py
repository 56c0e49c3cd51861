"""Finite-difference gradient checks, in float64, for every piece of the book's mathematics."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import (
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    Network,
    Regularizer,
    get_activation,
    get_cost,
)
from pipeline.nn.activations import HIDDEN_ACTIVATIONS, OUTPUT_ACTIVATIONS

EPS = 1e-6
TOL = 1e-6


def numerical_gradient(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar function f at x, one coordinate at a time."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        plus = f()
        flat[i] = old - EPS
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * EPS)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a) + np.abs(b))))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- activations --------------------------------------------------------------------------
@pytest.mark.parametrize("name", HIDDEN_ACTIVATIONS + OUTPUT_ACTIVATIONS)
def test_activation_backward_matches_finite_differences(name, rng):
    act = get_activation(name)
    z = rng.normal(size=(4, 5))
    if name == "relu":
        z[np.abs(z) < 0.05] = 0.3  # keep away from the kink
    g = rng.normal(size=z.shape)  # upstream dC/da

    def loss():
        return float(np.sum(act.fn(z) * g))

    analytic = act.backward(z, act.fn(z), g)
    assert relative_error(analytic, numerical_gradient(loss, z)) < TOL


def test_softmax_rows_sum_to_one_and_survive_large_inputs():
    a = get_activation("softmax").fn(np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    assert np.all(np.isfinite(a))


def test_sigmoid_does_not_overflow():
    a = get_activation("sigmoid").fn(np.array([-1e4, 0.0, 1e4]))
    np.testing.assert_allclose(a, [0.0, 0.5, 1.0])


# --- costs --------------------------------------------------------------------------------
# Cross-entropy and log-likelihood need outputs in (0, 1): sigmoid or softmax.
COST_OUTPUT_PAIRS = [
    *[("quadratic", out) for out in ("sigmoid", "softmax", "identity", "tanh")],
    *[
        (cost, out)
        for cost in ("cross_entropy", "log_likelihood")
        for out in ("sigmoid", "softmax")
    ],
]


@pytest.mark.parametrize(("cost_name", "output"), COST_OUTPUT_PAIRS)
def test_cost_delta_is_gradient_of_cost_wrt_z(cost_name, output, rng):
    """BP1: delta^L = dC/dz^L, for every cost and output activation it is defined for."""
    cost, act = get_cost(cost_name), get_activation(output)
    m = 3
    z = rng.normal(size=(m, 4))
    y = np.eye(4)[rng.integers(0, 4, size=m)]

    def loss():
        return cost.fn(act.fn(z), y)

    delta = cost.delta(z, act.fn(z), y, act) / m  # fn is a batch mean; delta is per sample
    assert relative_error(delta, numerical_gradient(loss, z)) < TOL


def test_cross_entropy_delta_cancels_sigma_prime():
    """With sigmoid outputs delta^L = a - y exactly, however saturated the neuron."""
    cost, act = get_cost("cross_entropy"), get_activation("sigmoid")
    z = np.array([[-30.0, 30.0]])
    a, y = act.fn(z), np.array([[1.0, 0.0]])
    np.testing.assert_array_equal(cost.delta(z, a, y, act), a - y)
    quadratic = get_cost("quadratic").delta(z, a, y, act)
    assert np.all(np.abs(quadratic) < 1e-12)  # the quadratic cost's learning slowdown


# --- regularisers -------------------------------------------------------------------------
@pytest.mark.parametrize(("l2", "l1"), [(0.7, 0.0), (0.0, 0.4), (0.5, 0.3)])
def test_regularizer_gradient(l2, l1, rng):
    reg, n = Regularizer(l2=l2, l1=l1), 25
    w = rng.normal(size=(3, 4))
    grad = np.zeros_like(w)
    reg.add_gradient(w, grad, n)
    assert relative_error(grad, numerical_gradient(lambda: reg.penalty([w], n), w)) < TOL


def test_regularizer_scales_with_lambda_over_n():
    w = np.ones((2, 2))
    assert Regularizer(l2=2.0).penalty([w], n=4) == pytest.approx(0.5 * 2.0 / 4 * 4)
    assert Regularizer(l1=2.0).penalty([w], n=4) == pytest.approx(2.0 / 4 * 4)


# --- layers -------------------------------------------------------------------------------
def check_layer(layer, x: np.ndarray, rng, reseed=None) -> None:
    """Input and parameter gradients of sum(forward(x) * g) against finite differences."""
    if reseed:
        reseed()
    out = layer.forward(x, training=True)
    g = rng.normal(size=out.shape)
    dx = layer.backward(g)

    def loss():
        if reseed:
            reseed()
        return float(np.sum(layer.forward(x, training=True) * g))

    assert relative_error(dx, numerical_gradient(loss, x)) < TOL
    for key, value in layer.params.items():
        assert relative_error(layer.grads[key], numerical_gradient(loss, value)) < TOL, key


@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS + ("sigmoid",))
def test_dense_gradients(activation, rng):
    layer = Dense(5, 3, get_activation(activation), rng, "scaled", np.float64)
    x = rng.normal(size=(4, 5))
    check_layer(layer, x, rng)


@pytest.mark.parametrize(("channels", "filters", "kernel"), [(1, 3, 3), (2, 4, 2), (3, 2, 3)])
def test_conv2d_gradients(channels, filters, kernel, rng):
    layer = Conv2D(channels, filters, kernel, get_activation("tanh"), rng, "scaled", np.float64)
    x = rng.normal(size=(2, 6, 5, channels))
    check_layer(layer, x, rng)


def test_conv2d_matches_direct_cross_correlation(rng):
    """The strided-view-and-GEMM forward equals the definition, computed naively."""
    layer = Conv2D(2, 3, 3, get_activation("identity"), rng, "scaled", np.float64)
    x = rng.normal(size=(2, 5, 6, 2))
    out = layer.forward(x)
    K, b = layer.params["W"], layer.params["b"]
    expected = np.zeros((2, 3, 4, 3))
    for n in range(2):
        for i in range(3):
            for j in range(4):
                patch = x[n, i : i + 3, j : j + 3, :]
                expected[n, i, j] = np.tensordot(patch, K, axes=3) + b
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_maxpool_gradients_and_values(rng):
    layer = MaxPool2D(2)
    x = rng.normal(size=(2, 5, 4, 3))  # 5 rows: the last row is dropped
    out = layer.forward(x, training=True)
    assert out.shape == (2, 2, 2, 3)
    np.testing.assert_array_equal(out[1, 1, 0, 2], x[1, 2:4, 0:2, 2].max())
    np.testing.assert_array_equal(layer.forward(x), out)  # prediction path agrees
    check_layer(layer, x, rng)


def test_dropout_gradients_with_fixed_mask(rng):
    layer = Dropout(0.4, rng)

    def reseed():
        layer.rng = np.random.default_rng(7)

    check_layer(layer, rng.normal(size=(6, 5)), rng, reseed=reseed)


def test_dropout_is_inverted_and_off_at_prediction(rng):
    layer = Dropout(0.5, rng)
    x = np.ones((2000, 50))
    out = layer.forward(x, training=True)
    assert set(np.unique(out)) == {0.0, 2.0}
    assert out.mean() == pytest.approx(1.0, abs=0.02)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_flatten_gradients(rng):
    check_layer(Flatten(), rng.normal(size=(2, 3, 2, 2)), rng)


# --- whole networks -----------------------------------------------------------------------
def check_network(net: Network, x: np.ndarray, y: np.ndarray, n: int, reseed=None) -> None:
    if reseed:
        reseed()
    net.backprop(x, y, n)
    for name, value, grad in net.parameters():

        def loss():
            if reseed:
                reseed()
            return net.loss(x, y, n, training=True)

        assert relative_error(grad, numerical_gradient(loss, value)) < TOL, name


@pytest.mark.parametrize(
    ("cost", "output"),
    [("quadratic", "sigmoid"), ("cross_entropy", "sigmoid"), ("log_likelihood", "softmax")],
)
def test_mlp_network_gradients_with_l2_l1_and_dropout(cost, output, rng):
    f64 = np.float64
    drop = Dropout(0.3, rng)
    layers = [
        Dense(6, 5, get_activation("tanh"), rng, "scaled", f64),
        drop,
        Dense(5, 4, get_activation("sigmoid"), rng, "scaled", f64),
        Dense(4, 3, get_activation(output), rng, "scaled", f64),
    ]
    net = Network(layers, get_cost(cost), Regularizer(l2=0.8, l1=0.3))
    x = rng.normal(size=(5, 6))
    y = np.eye(3)[rng.integers(0, 3, size=5)]

    def reseed():
        drop.rng = np.random.default_rng(3)

    check_network(net, x, y, n=20, reseed=reseed)


def test_cnn_network_gradients(rng):
    f64 = np.float64
    layers = [
        Conv2D(1, 3, 3, get_activation("relu"), rng, "scaled", f64),
        MaxPool2D(2),
        Conv2D(3, 2, 2, get_activation("sigmoid"), rng, "scaled", f64),
        Flatten(),
        Dense(2 * 2 * 2, 3, get_activation("softmax"), rng, "scaled", f64),
    ]
    net = Network(layers, get_cost("log_likelihood"), Regularizer(l2=0.5))
    x = rng.normal(size=(3, 8, 8, 1))
    y = np.eye(3)[[0, 2, 1]]
    check_network(net, x, y, n=10)
