"""The convolution's window view: numpy's sliding_window_view, built with less overhead."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.nn.layers import _window_view


def _read_only(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x


@pytest.mark.parametrize(
    "x",
    [
        np.arange(2 * 9 * 9, dtype=np.float32).reshape(2, 9, 9, 1),
        np.random.default_rng(0).random((3, 7, 8, 4)),
        np.random.default_rng(1).random((3, 7, 10, 2))[:, :, 1:],  # not contiguous
        np.random.default_rng(2).random((6, 7, 7, 2))[3:],  # a view with an offset
        _read_only(np.random.default_rng(3).random((2, 6, 6, 1))),
    ],
    ids=["one-channel", "channels", "strided", "offset", "read-only"],
)
def test_window_view_is_numpys_sliding_window_view(x):
    view = _window_view(x, 3)
    expected = sliding_window_view(x, (3, 3), axis=(1, 2))
    assert view.shape == expected.shape
    np.testing.assert_array_equal(view, expected)
    assert not view.flags.writeable
