"""The BLAS thread limit, read and set through threadpoolctl (imported on first use).

The network splits a mini-batch across as many Python threads as the BLAS limit in force
allows (``threadpoolctl.threadpool_limits``, as the train stage sets it), and runs each
half with one BLAS thread, so that the two levels of threads do not oversubscribe the cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_controllers: list | None = None


def _blas() -> list:
    """threadpoolctl's controller of every BLAS library loaded (found once per process):
    NumPy's and scipy's, whose gemm :meth:`~pipeline.nn.layers.Dense.add_weight_gradient`
    calls (scipy's is loaded here first, so that it is among them)."""
    global _controllers
    if _controllers is None:
        import scipy.linalg.blas  # noqa: F401

        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # no threadpoolctl: one thread, as if limited to 1
            _controllers = []
        else:
            _controllers = ThreadpoolController().select(user_api="blas").lib_controllers
    return _controllers


def blas_threads() -> int:
    """The smallest thread limit of the loaded BLAS libraries now (1 if none is found)."""
    return min((lib.num_threads for lib in _blas()), default=1)


@contextmanager
def blas_limited_to(n: int) -> Iterator[None]:
    """BLAS limited to ``n`` threads inside the block, the previous limits restored after."""
    libs = _blas()
    before = [lib.num_threads for lib in libs]
    for lib in libs:
        lib.set_num_threads(n)
    try:
        yield
    finally:
        for lib, count in zip(libs, before, strict=True):
            lib.set_num_threads(count)
