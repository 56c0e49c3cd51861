"""Helpers for the data tests: generated IDX datasets and a local HTTP mirror."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.data.idx import write_idx

#: The standard MNIST file names, by role (as in conf/data/mnist.yaml, without .gz).
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def make_idx_dataset(
    directory: Path,
    n_train: int = 120,
    n_test: int = 40,
    shape: tuple[int, int] = (28, 28),
    gz: bool = True,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the four MNIST-format files of a small random dataset (10 balanced classes)."""
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    return {
        role: write_idx(directory / (IDX_NAMES[role] + suffix), array)
        for role, array in arrays.items()
    }


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # silence the access log
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) in a thread.

    Yields (base URL, list of requested paths, appended as requests arrive).
    """
    requests: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A URL whose server accepts connections but never answers (to test timeouts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"


def leftovers(directory: Path) -> list[str]:
    """Temporary files that an interrupted atomic write would leave behind."""
    return sorted(p.name for p in directory.rglob(".*.tmp")) if directory.exists() else []
