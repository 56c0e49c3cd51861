"""Weight initialisation (chapter 3, "Weight initialization").

``large``: weights and biases drawn from N(0, 1), the chapter-1 network's choice; hidden
neurons with many inputs then start saturated.
``scaled``: weights from N(0, 1/n_in), biases from N(0, 1), the book's improved choice.
``he``: weights from N(0, 2/n_in), biases 0, the usual choice for ReLU layers.
"""

from __future__ import annotations

import numpy as np

INITS = ("large", "scaled", "he")


def init_weights(
    name: str,
    shape: tuple[int, ...],
    n_in: int,
    rng: np.random.Generator,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Weights of ``shape`` for a layer with ``n_in`` inputs per neuron."""
    if name == "large":
        std = 1.0
    elif name == "scaled":
        std = 1.0 / np.sqrt(n_in)
    elif name == "he":
        std = np.sqrt(2.0 / n_in)
    else:
        raise ValueError(f"unknown init {name!r}; expected one of {list(INITS)}")
    return (rng.standard_normal(shape) * std).astype(dtype)


def init_biases(
    name: str,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Biases of ``shape``: N(0, 1) as in the book, zero for ``he``."""
    if name not in INITS:
        raise ValueError(f"unknown init {name!r}; expected one of {list(INITS)}")
    if name == "he":
        return np.zeros(shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)
