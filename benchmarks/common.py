"""Helpers shared by the benchmarks: data, timing, BLAS description, tables, atomic writes."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.neural_network import MLPClassifier as SklearnMLP
from threadpoolctl import threadpool_info

N_FEATURES = 784  # 28 x 28 images, as Fashion-MNIST
N_CLASSES = 10


def make_data(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST-sized synthetic data: 10 classes of Gaussian blobs around random
    prototype images, 784 float32 pixels in [0, 1], int64 labels."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((N_CLASSES, N_FEATURES))
    y = rng.integers(0, N_CLASSES, n_samples)
    X = prototypes[y] + 0.3 * rng.standard_normal((n_samples, N_FEATURES))
    return np.clip(X, 0.0, 1.0).astype(np.float32), y


def time_call(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def blas_libraries() -> list[str]:
    """One line per BLAS library loaded in this process: API, version, threads, file."""
    return [
        f"{info['internal_api']} {info.get('version')} "
        f"({info.get('threading_layer', '?')}, {info['num_threads']} threads) "
        f"{Path(info['filepath']).name}"
        for info in threadpool_info()
        if info["user_api"] == "blas"
    ]


def render_text(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def render_markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table in GitHub Markdown."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(headers), line(["---"] * len(headers)), *(line(r) for r in rows)])


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and os.replace,
    so that a reader never sees a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sklearn_mlp(
    hidden: int, batch: int, epochs: int, seed: int, learning_rate: float
) -> SklearnMLP:
    """scikit-learn's MLPClassifier as the reference: plain SGD at a constant eta, no penalty,
    no momentum, and never stopping before ``epochs``."""
    return SklearnMLP(
        (hidden,),
        activation="logistic",
        solver="sgd",
        alpha=0.0,
        batch_size=batch,
        learning_rate="constant",
        learning_rate_init=learning_rate,
        max_iter=epochs,
        shuffle=True,
        random_state=seed,
        tol=0.0,
        momentum=0.0,
        nesterovs_momentum=False,
        early_stopping=False,
        n_iter_no_change=epochs + 1,  # never stops before max_iter
    )
