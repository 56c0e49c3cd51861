"""A convolution followed by max-pooling, as the Network runs them: the pool applies the
convolution's activation after taking maxima, over the convolution's output grouped by
offset in the pooling blocks (``Conv2D.block``). Same function and same gradients as the
layers run one after the other."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import (
    Conv2D,
    Dense,
    Flatten,
    MaxPool2D,
    Network,
    Regularizer,
    get_activation,
    get_cost,
)
from pipeline.nn.activations import Identity
from tests.nn.test_gradients import check_network

CASES = [  # (image side, pool size, activation of the pooled convolution)
    (7, 2, "relu"),  # 5x5 feature map: the last row and column are dropped by the pool
    (8, 3, "sigmoid"),  # 6x6 feature map, 3x3 pooling
    (8, 2, "tanh"),
]


def build(side, pool, activation, seed=0):
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
    return Network(layers, get_cost("log_likelihood"), Regularizer(l2=0.3))


def unfuse(net):
    """Undo the Network's fusion: the layers run one after the other, as built."""
    conv, pool = net.layers[1], net.layers[2]
    conv.activation, pool.activation = pool.activation, Identity()
    conv.block = 1
    return net


@pytest.mark.parametrize(("side", "pool", "activation"), CASES)
def test_fused_convolution_and_pool_gradients(side, pool, activation):
    net = build(side, pool, activation)
    assert net.layers[1].block == pool and net.layers[0].block == 1
    assert isinstance(net.layers[1].activation, Identity)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, side, side, 1))
    y = np.eye(3)[[0, 2, 1]]
    check_network(net, x, y, n=10)


@pytest.mark.parametrize(("side", "pool", "activation"), CASES)
def test_fused_equals_layer_after_layer(side, pool, activation):
    fused, plain = build(side, pool, activation), unfuse(build(side, pool, activation))
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, side, side, 1))
    y = np.eye(3)[[0, 1, 2, 1]]
    for _ in range(2):  # the second pass reuses the buffers
        np.testing.assert_allclose(fused.backprop(x, y, 10), plain.backprop(x, y, 10), rtol=1e-12)
        for (name, _, g), (_, _, h) in zip(fused.parameters(), plain.parameters(), strict=True):
            np.testing.assert_allclose(g, h, rtol=1e-10, atol=1e-14, err_msg=name)
    np.testing.assert_allclose(fused.forward(x), plain.forward(x), rtol=1e-12)


def test_pool_that_does_not_fit_the_fused_convolution_is_an_error():
    net = build(7, 2, "relu")
    with pytest.raises(ValueError, match="max-pool does not fit"):
        net.forward(np.zeros((1, 3, 3, 1)))  # 2x2 then 1x1 maps: no 2x2 block
