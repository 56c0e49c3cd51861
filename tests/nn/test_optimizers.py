"""SGD's update, in slices for arrays larger than one slice, and the dense layer's fused
step equal the book's formula."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import SGD, Dense, get_activation
from pipeline.nn.optimizers import CHUNK


@pytest.mark.parametrize("fused", [False, True], ids=["step", "fused_step"])
@pytest.mark.parametrize("momentum", [0.0, 0.7])
@pytest.mark.parametrize("l2_rate", [0.0, 0.01])
@pytest.mark.parametrize("shape", [(3, 4), (CHUNK // 100 + 7, 100)], ids=["small", "sliced"])
def test_sgd_steps_follow_the_formula(fused, momentum, l2_rate, shape):
    """v -> mu v - eta (dC0/dw + lambda/n w), w -> w + v: step() given the gradient with the
    penalty's added (as the network adds it), or fused_step() adding dC0/dw through its
    callback (as Dense.add_weight_gradient does) and the penalty itself."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=shape)
    expected, v = w.copy(), np.zeros(shape)
    opt = SGD(0.3, momentum=momentum)
    for _ in range(3):
        g = rng.normal(size=shape)
        if fused:

            def add_gradient(target, alpha, beta, g=g):
                target *= beta
                target += alpha * g

            opt.fused_step(w, add_gradient, l2_rate)
        else:
            total = g + l2_rate * w
            kept = total.copy()
            opt.step([w], [total])
            np.testing.assert_array_equal(total, kept)  # the gradient is left as it was
        v = momentum * v - 0.3 * (g + l2_rate * expected)
        expected += v
        np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "blocks", [[slice(None)], [slice(0, 3), slice(3, None)]], ids=["whole", "row-halves"]
)
def test_the_dense_layer_adds_bp4_into_an_array_in_place(dtype, blocks):
    """Dense.add_weight_gradient: target -> beta target + alpha x^T delta, in the target's own
    memory, block by block of W's rows; a second call with beta 1 adds another part of the
    batch's; grads["W"] is never written."""
    rng = np.random.default_rng(0)
    layer = Dense(7, 4, get_activation("sigmoid"), rng, "scaled", dtype)
    target = rng.normal(size=(7, 4)).astype(dtype)
    memory = target.ctypes.data
    expected = 0.9 * target.astype(np.float64)
    for k, m in enumerate((5, 3)):
        x = rng.normal(size=(m, 7)).astype(dtype)
        layer.forward(x, training=True)
        layer.backward(rng.normal(size=(m, 4)).astype(dtype), input_grad=False, weight_grad=False)
        for rows in blocks:
            layer.add_weight_gradient(target[rows], -0.3, 0.9 if k == 0 else 1.0, rows)
        expected -= 0.3 * x.T.astype(np.float64) @ layer._delta.astype(np.float64)
    np.testing.assert_allclose(target, expected, rtol=1e-5 if dtype == np.float32 else 1e-13)
    assert target.ctypes.data == memory
    np.testing.assert_array_equal(layer.grads["W"], 0.0)
