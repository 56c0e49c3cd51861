"""The fused convolution + max-pool (:class:`ConvPool2D`, built by :func:`fuse`): the pool
applies the convolution's activation after taking maxima, over the convolution's output
grouped by offset in the pooling blocks. Same function and same gradients as the book's
layers one after the other (:mod:`pipeline.nn.reference`), and the given layers untouched."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline.nn import (
    Conv2D,
    ConvPool2D,
    Dense,
    Flatten,
    MaxPool2D,
    Network,
    Regularizer,
    fuse,
    get_activation,
    get_cost,
)
from pipeline.nn.activations import Identity
from pipeline.nn.reference import reference_of
from tests.nn.test_gradients import check_network

CASES = [  # (image side, pool size, activation of the pooled convolution)
    (7, 2, "relu"),  # 5x5 feature map: the last row and column are dropped by the pool
    (8, 3, "sigmoid"),  # 6x6 feature map, 3x3 pooling
    (8, 2, "tanh"),
]


def build(side, pool, activation, seed=0, workers=None):
    rng = np.random.default_rng(seed)
    f64 = np.float64
    fmap = side - 2  # two 2x2 convolutions
    n_flat = (fmap // pool) ** 2 * 3
    layers = [
        Conv2D(1, 2, 2, get_activation("tanh"), rng, "scaled", f64),
        Conv2D(2, 3, 2, get_activation(activation), rng, "scaled", f64),  # needs dC/dx
        MaxPool2D(pool),
        Flatten(),
        Dense(n_flat, 3, get_activation("softmax"), rng, "scaled", f64),
    ]
    return Network(layers, get_cost("log_likelihood"), Regularizer(l2=0.3), workers=workers)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("side", "pool", "activation"), CASES)
def test_fused_convolution_and_pool_gradients(side, pool, activation, workers):
    net = build(side, pool, activation, workers=workers)
    assert [type(layer) for layer in net._stack] == [Conv2D, ConvPool2D, Flatten, Dense]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, side, side, 1))  # 16: split in two halves with workers=2
    y = np.eye(3)[rng.integers(0, 3, 16)]
    check_network(net, x, y, n=10)
    assert (net._twin is not None) == (workers == 2)


@pytest.mark.parametrize(("side", "pool", "activation"), CASES)
def test_fused_equals_the_book_layers_one_after_the_other(side, pool, activation):
    net = build(side, pool, activation)
    reference = reference_of(net)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, side, side, 1))
    y = np.eye(3)[[0, 1, 2, 1]]
    for _ in range(2):  # the second pass reuses the buffers
        a = net.backprop(x, y, 10)
        grads, expected = reference.backprop(x, y)
        np.testing.assert_allclose(a, expected, rtol=1e-10)
        for name, value, g in net.parameters():
            penalty = (0.3 / 10) * value if name.endswith(".W") else 0.0
            np.testing.assert_allclose(
                g, grads[name] + penalty, rtol=1e-10, atol=1e-14, err_msg=name
            )
    np.testing.assert_allclose(net.forward(x), reference.forward(x), rtol=1e-10)


def test_fuse_builds_new_layers_and_modifies_none():
    net = build(8, 2, "relu")
    conv, pool = net.layers[1], net.layers[2]
    before = (conv.activation, pool.activation, dict(conv.__dict__), dict(pool.__dict__))
    stack = fuse(net.layers)
    assert stack[0] is net.layers[0] and stack[2:] == net.layers[3:]
    assert isinstance(stack[1], ConvPool2D) and stack[1].params["W"] is conv.params["W"]
    net.backprop(np.zeros((2, 8, 8, 1)), np.eye(3)[[0, 1]], 10)
    assert (conv.activation, pool.activation) == before[:2]
    assert conv._buffers == {} and pool._buffers == {}  # the fused layer ran, not these
    assert set(conv.__dict__) == set(before[2]) and set(pool.__dict__) == set(before[3])


def test_a_convolution_whose_pool_holds_the_activation_fuses_the_same():
    """Pickles from before fuse() hold the pair rewritten in place: the identity in the
    convolution, sigma in the pool. Loaded, they fuse to the same layer."""
    net = build(8, 2, "relu")
    legacy = pickle.loads(pickle.dumps(net))
    conv, pool = legacy.layers[1], legacy.layers[2]
    conv.activation, pool.activation = Identity(), conv.activation
    conv.block = 2  # the attribute those pickles carry, dropped on loading
    legacy = pickle.loads(pickle.dumps(legacy))
    assert not hasattr(legacy.layers[1], "block")
    assert legacy._stack[1].activation.name == "relu"
    x = np.random.default_rng(3).normal(size=(3, 8, 8, 1))
    np.testing.assert_array_equal(legacy.forward(x), net.forward(x))


def test_pool_that_does_not_fit_the_fused_convolution_is_an_error():
    net = build(7, 2, "relu")
    with pytest.raises(ValueError, match="max-pool does not fit"):
        net.forward(np.zeros((1, 3, 3, 1)))  # 2x2 then 1x1 maps: no 2x2 block


def test_gradient_norms_are_named_after_the_layers():
    net = build(8, 2, "relu")
    assert net.layer_names() == ["conv1", "conv2", None, None, "output"]
    net.backprop(np.zeros((2, 8, 8, 1)), np.eye(3)[[0, 1]], 10)
    norms = net.gradient_norms()
    assert list(norms) == ["conv1", "conv2", "output"]
    assert norms["output"] == pytest.approx(float(np.linalg.norm(net.layers[4].grads["W"])))
