"""SGD's update, in slices for arrays larger than one slice, and the dense layer's fused
step equal the book's formula."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import SGD, Dense, Regularizer, get_activation
from pipeline.nn.optimizers import CHUNK


@pytest.mark.parametrize("momentum", [0.0, 0.7])
@pytest.mark.parametrize("shape", [(3, 4), (CHUNK // 100 + 7, 100)], ids=["small", "sliced"])
def test_sgd_steps_follow_the_formula(momentum, shape):
    rng = np.random.default_rng(0)
    w = rng.normal(size=shape)
    expected, v = w.copy(), np.zeros(shape)
    opt = SGD(0.3, momentum=momentum)
    for _ in range(3):
        g = rng.normal(size=shape)
        kept = g.copy()
        opt.step([w], [g])
        v = momentum * v - 0.3 * g  # v -> mu v - eta dC/dw, w -> w + v
        expected += v
        np.testing.assert_array_equal(g, kept)  # the gradient is left as it was
        np.testing.assert_allclose(w, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("decay", [1.0, 0.99])
@pytest.mark.parametrize(
    "blocks", [[slice(None)], [slice(0, 3), slice(3, None)]], ids=["whole", "row-halves"]
)
def test_the_fused_dense_step_is_bp4_then_the_sgd_step(dtype, decay, blocks):
    """Dense.descend: W -> decay W - eta x^T delta, in W's own memory, block by block;
    a second call with decay 1 adds another part of the batch's gradient."""
    rng = np.random.default_rng(0)
    layer = Dense(7, 4, get_activation("sigmoid"), rng, "scaled", dtype)
    W = layer.params["W"]
    memory = W.ctypes.data
    halves = [rng.normal(size=(5, 7)).astype(dtype), rng.normal(size=(3, 7)).astype(dtype)]
    expected = decay * W.astype(np.float64)
    for k, x in enumerate(halves):
        layer.forward(x, training=True)
        g = rng.normal(size=(len(x), 4)).astype(dtype)
        layer.backward(g, input_grad=False, weight_grad=False)
        delta = layer._delta.astype(np.float64)
        for rows in blocks:
            layer.descend(0.3, decay if k == 0 else 1.0, rows)
        expected -= 0.3 * x.T.astype(np.float64) @ delta
    np.testing.assert_allclose(W, expected, rtol=1e-5 if dtype == np.float32 else 1e-13)
    assert W.ctypes.data == memory
    np.testing.assert_array_equal(layer.grads["W"], 0.0)  # BP4 left to descend: never stored


def test_weight_decay_is_the_l2_step_and_undefined_with_l1():
    assert Regularizer(l2=5.0).decay(0.1, 1000) == pytest.approx(1 - 0.1 * 5.0 / 1000)
    assert Regularizer().decay(0.1, 1000) == 1.0
    assert Regularizer(l2=5.0, l1=1.0).decay(0.1, 1000) is None
