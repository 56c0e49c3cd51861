"""SGD's update, in slices for arrays larger than one slice, equals the book's formula."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.nn import SGD
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
