"""Work buffers of the training pass: reused, never leaking into predictions or pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline import CNNClassifier, MLPClassifier
from pipeline.nn import (
    Conv2D,
    ConvPool2D,
    Dense,
    Flatten,
    MaxPool2D,
    Network,
    get_activation,
    get_cost,
)
from pipeline.nn.activations import Identity


def small_cnn(rng, activation="relu"):
    f64 = np.float64
    layers = [
        Conv2D(1, 3, 3, get_activation(activation), rng, "scaled", f64),
        MaxPool2D(2),
        Conv2D(3, 2, 2, get_activation("tanh"), rng, "scaled", f64),
        Flatten(),
        Dense(2 * 2 * 2, 3, get_activation("softmax"), rng, "scaled", f64),
    ]
    return Network(layers, get_cost("log_likelihood"))


def test_training_reuses_buffers_and_prediction_allocates():
    rng = np.random.default_rng(0)
    net = small_cnn(rng)
    x = rng.normal(size=(4, 8, 8, 1))
    y = np.eye(3)[[0, 1, 2, 0]]
    first = net.backprop(x, y, 10)
    again = net.backprop(x, y, 10)
    assert again is first  # the output layer's buffer, reused
    p1, p2 = net.forward(x), net.forward(x)
    assert not np.shares_memory(p1, p2)
    assert not np.shares_memory(p1, first)
    np.testing.assert_allclose(p1, first)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
def test_fusion_builds_new_layers_and_leaves_the_given_ones_alone(activation):
    net = small_cnn(np.random.default_rng(1), activation)
    conv, pool, conv2 = net.layers[:3]
    assert conv.activation.name == activation and isinstance(pool.activation, Identity)
    assert conv2.activation.name == "tanh"
    fused = net._stack[0]
    assert isinstance(fused, ConvPool2D) and fused is not conv
    assert fused.activation.name == activation and fused.pool_size == 2
    assert fused.params is conv.params and fused.grads is conv.grads  # trains the conv
    assert net._stack[1] is conv2  # not followed by pooling: run as given
    assert not hasattr(conv, "block") and not hasattr(conv, "needs_input_grad")


@pytest.mark.parametrize(
    "make",
    [
        lambda: MLPClassifier((20,), epochs=2, random_state=0),
        lambda: CNNClassifier(((4, 3, 2),), hidden_layer_sizes=(10,), epochs=2, random_state=0),
    ],
    ids=["mlp", "cnn"],
)
def test_pickle_drops_work_buffers_and_training_continues_identically(make):
    rng = np.random.default_rng(0)
    X = rng.random((60, 64))
    y = rng.integers(0, 3, 60)
    est = make().fit(X, y)
    blob = pickle.dumps(est)
    assert len(blob) < 200_000  # weights only: no cached batches or buffers
    for layer in est.network_.layers:
        assert "_buffers" not in layer.__getstate__()
    copy = pickle.loads(blob)
    est.partial_fit(X, y)
    copy.partial_fit(X, y)
    for (name, a, _), (_, b, _) in zip(
        est.network_.parameters(), copy.network_.parameters(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(est.predict_proba(X), copy.predict_proba(X))


def test_fitted_estimator_keeps_no_work_buffers():
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 64)), rng.integers(0, 3, 40)
    est = CNNClassifier(((4, 3, 2),), hidden_layer_sizes=(10,), epochs=2, batch_size=8).fit(X, y)
    for layer in est.network_.layers:
        assert layer._buffers == {}
        assert not any(hasattr(layer, key) for key in layer._transient)
    est.partial_fit(X, y)  # allocates them again, and frees them again
    assert all(layer._buffers == {} for layer in est.network_.layers)


@pytest.mark.parametrize("output", ["identity", "tanh", "sigmoid", "softmax"])
def test_backprop_with_any_output_activation_matches_a_fresh_network(output):
    """The output error lands in the right array whatever the output activation (the
    identity returns its input instead of writing into a buffer)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 4)), np.eye(3)[[0, 1, 2, 1, 0]]

    def fresh():
        r = np.random.default_rng(7)
        layers = [
            Dense(4, 6, get_activation("tanh"), r, "scaled", np.float64),
            Dense(6, 3, get_activation(output), r, "scaled", np.float64),
        ]
        return Network(layers, get_cost("quadratic"))

    net = fresh()
    for _ in range(3):  # buffers reused from the second pass on
        net.backprop(x, y, 10)
    expected = fresh()
    expected.backprop(x, y, 10)
    for (name, _, g), (_, _, h) in zip(net.parameters(), expected.parameters(), strict=True):
        np.testing.assert_allclose(g, h, rtol=1e-12, err_msg=name)
