"""The search's spawned worker processes, started first: their imports (Optuna,
scikit-learn, the networks, MLflow when tracking) overlap the stage's own set-up (its
imports, the study, the MLflow parent run) instead of following it.

Light on purpose (no Optuna here): the stage starts the pool before it imports anything
heavy itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCHDOG_INTERVAL = 1.0


# --- worker processes die with their parent ------------------------------------------------
def die_with_parent(parent_pid: int) -> None:
    """Initializer of every worker process: SIGKILL when the parent dies (Linux
    ``prctl(PR_SET_PDEATHSIG)``), and a watchdog thread that exits when the parent pid
    changes (other systems, or a parent thread that ended first)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # died before the signal was set up
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCHDOG_INTERVAL)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def warm_up(tracking_uri: str | None, sql_storage: bool = True) -> None:
    """The first task of every spawned worker: import what a trial needs (the worker code;
    SQLAlchemy and Alembic, which Optuna's SQL storage loads on first use; MLflow's client
    and SQL store when tracking) while the stage prepares the study."""
    import pipeline.search.workers  # noqa: F401  Optuna, scikit-learn, the networks

    if sql_storage:
        import alembic.command  # noqa: F401
        import alembic.migration  # noqa: F401
        import alembic.script  # noqa: F401
        import sqlalchemy.orm  # noqa: F401
    if tracking_uri:
        import mlflow  # noqa: F401

        if not tracking_uri.lower().startswith(("http:", "https:")):
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


@contextlib.contextmanager
def worker_pool(
    workers: int, tracking_uri: str | None, sql_storage: bool = True
) -> Iterator[ProcessPoolExecutor | None]:
    """``workers - 1`` spawned processes that die with this one (None for one worker), each
    warming up at once (:func:`warm_up`); shut down (waiting for their tasks) on leaving."""
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(
        max_workers=workers - 1, mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent, initargs=(os.getpid(),),
    ) as pool:  # fmt: skip
        for _ in range(workers - 1):
            pool.submit(warm_up, tracking_uri, sql_storage)
        yield pool
