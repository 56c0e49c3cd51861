"""Issues 6 and 14: our NumPy networks against PyTorch on the CPU, scikit-learn and the matmul peak.

Run ``python -m benchmarks`` (``--help`` for the options). It prints one table and writes it
to ``reports/benchmarks.md``.

What is measured
----------------
* Training, samples per second of one epoch of plain mini-batch SGD (constant eta, no
  momentum, no penalty, shuffled every epoch):

  - MLP [784, 100, 10], sigmoid hidden neurons, softmax outputs with the log-likelihood
    (cross-entropy) cost, batch 10 and batch 128: ``pipeline.MLPClassifier``,
    ``sklearn.neural_network.MLPClassifier`` (solver "sgd", "logistic") and PyTorch.
  - The chapter-6 CNN: conv 20@5x5 (ReLU), 2x2 max-pool, dense 100 (ReLU), softmax 10, on
    28x28 images, batch 10 and 64, at 1 and 2 threads: ``pipeline.CNNClassifier`` and
    PyTorch (sklearn has no CNN); and our 2-thread over 1-thread speed-up at batch 64 (from
    the same rows).
  - Chapter 6's two-convolution network: conv 20@5x5, pool 2, conv 40@5x5, pool 2, dense
    100, softmax 10, measured the same way.

  Ours and sklearn's are timed through ``fit`` (input checks included) with ``epochs=1`` /
  ``max_iter=1``. The PyTorch reference is what a user would write: an equivalent
  ``nn.Sequential``, ``nn.CrossEntropyLoss``, ``torch.optim.SGD``, and a Python loop over
  mini-batches drawn from a ``torch.randperm`` of the training set.
* Prediction: class probabilities of 10,000 images by the fitted MLP [784, 100, 10]
  (``predict_proba`` for ours and sklearn's; softmax of the network's output under
  ``torch.inference_mode`` for PyTorch).
* The NumPy float32 matrix-product peak: (2048x2048)@(2048x2048) and the MLP's own largest
  product (128x784)@(784x100), in GFLOP/s, at every thread count used above; and the
  fraction of that peak our MLP reaches at batch 128, counting 6 * (784*100 + 100*10) FLOP
  per training sample (forward, and backward for both weight and input gradients, as the
  issue does; our first layer skips its input gradient, so the FLOPs it really does are
  about 2/3 of that count).

How
---
Synthetic Fashion-MNIST-sized data (784 float32 pixels in [0, 1], 10 classes, seeded).
Every implementation runs with the same number of threads (threadpoolctl limits the BLAS
and OpenMP pools, ``torch.set_num_threads`` PyTorch's), printed in the table. Each
measurement is repeated ``--repeats`` times with the implementations interleaved (their
order alternating between repeats), so that a busy neighbour on a shared machine slows all
of them alike; the table gives medians (the matmul peak: the best repeat, the stricter
reference). Everything is warmed up once, untimed. The load average is printed before and
after: on a shared 2-core machine, figures taken while others run are noisy, the ratios
much less so.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLP
from threadpoolctl import threadpool_limits

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    N_CLASSES,
    N_FEATURES,
    blas_libraries,
    make_data,
    render_markdown,
    render_text,
)
from benchmarks.common import sklearn_mlp as common_sklearn_mlp  # noqa: E402
from pipeline import CNNClassifier, MLPClassifier  # noqa: E402
from pipeline.artifacts import write_text  # noqa: E402

try:  # PyTorch is a reference only, never a dependency of the project
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

LEARNING_RATE = 0.1
HIDDEN = 100
MLP_FLOP_PER_SAMPLE = 6 * (N_FEATURES * HIDDEN + HIDDEN * N_CLASSES)  # the count
PEAK_SHAPES = {"2048x2048x2048": (2048, 2048, 2048), "(128x784)@(784x100)": (128, 784, 100)}
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "reports" / "benchmarks.md"
HEADERS = (
    "benchmark",
    "batch",
    "threads",
    "unit",
    "ours",
    "sklearn",
    "PyTorch",
    "ours/sklearn",
    "ours/PyTorch",
    "target",
    "result",
)


# --- the implementations -------------------------------------------------------------------
def ours_mlp(batch: int, seed: int, epochs: int = 1) -> MLPClassifier:
    return MLPClassifier(
        (HIDDEN,),
        activation="sigmoid",
        cost="log_likelihood",  # softmax outputs, as sklearn's and nn.CrossEntropyLoss
        learning_rate=LEARNING_RATE,
        batch_size=batch,
        epochs=epochs,
        random_state=seed,
        dtype="float32",
    )


def sklearn_mlp(batch: int, seed: int, epochs: int = 1) -> SklearnMLP:
    return common_sklearn_mlp(HIDDEN, batch, epochs, seed, LEARNING_RATE)


CONV_LAYERS = {"one conv": ((20, 5, 2),), "two conv": ((20, 5, 2), (40, 5, 2))}


def ours_cnn(batch: int, seed: int, epochs: int = 1, convs: str = "one conv") -> CNNClassifier:
    return CNNClassifier(
        conv_layers=CONV_LAYERS[convs],
        hidden_layer_sizes=(HIDDEN,),
        activation="relu",
        cost="log_likelihood",
        learning_rate=LEARNING_RATE,
        batch_size=batch,
        epochs=epochs,
        random_state=seed,
        dtype="float32",
    )


def torch_mlp():
    nn = torch.nn
    return nn.Sequential(nn.Linear(N_FEATURES, HIDDEN), nn.Sigmoid(), nn.Linear(HIDDEN, N_CLASSES))


def torch_cnn(convs: str = "one conv"):
    nn = torch.nn
    second = [nn.Conv2d(20, 40, 5), nn.ReLU(), nn.MaxPool2d(2)] if convs == "two conv" else []
    return nn.Sequential(
        nn.Conv2d(1, 20, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        *second,
        nn.Flatten(),
        nn.Linear(40 * 4 * 4 if second else 20 * 12 * 12, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, N_CLASSES),
    )


def torch_train_epoch(model, X, y, batch: int, seed: int) -> None:
    """One epoch of plain SGD, written the way a PyTorch user writes it."""
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(len(X))
    for start in range(0, len(X), batch):
        idx = perm[start : start + batch]
        optimizer.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        optimizer.step()


# --- timing --------------------------------------------------------------------------------
def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fitting(make: Callable[[int], object], X: np.ndarray, y: np.ndarray):
    """A candidate for :func:`interleaved`: a fresh estimator ``make(seed)``, timed in fit."""

    def prepare(seed: int) -> Callable[[], object]:
        estimator = make(seed)
        return lambda: estimator.fit(X, y)

    return prepare


PAUSE = 0.3  # default seconds before each timed run (see interleaved)


def interleaved(
    candidates: dict[str, Callable[[int], Callable[[], object]]],
    repeats: int,
    seed: int = 0,
    pause: float = PAUSE,
) -> dict[str, float]:
    """Median seconds of each candidate, timed in turns (order alternating by repeat).

    ``candidates[name](seed)`` prepares one run (untimed: building a fresh model) and
    returns the callable that is timed. Every candidate runs once untimed first. Before each
    timed run the process sleeps ``pause`` seconds: OpenBLAS's worker threads spin for
    about 0.1 s after their last product, and OpenMP's for a while too, and a spinning pool
    of one library would otherwise eat into the next library's run.
    """
    names = list(candidates)
    for name in names:
        candidates[name](seed + repeats)()  # warm-up, with a seed the repeats do not use
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            run = candidates[name](seed + repeat)
            time.sleep(pause)
            times[name].append(seconds(run))
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_operands(m: int, k: int, n: int, seed: int = 0):
    """Random float32 (m x k) and (k x n) matrices and an (m x n) output array."""
    rng = np.random.default_rng(seed)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    return a, b, np.empty((m, n), np.float32)


def calls_per(fn: Callable[[], object], duration: float) -> int:
    """How many calls of ``fn`` take about ``duration`` seconds (after one warm-up call)."""
    fn()
    return max(1, int(duration / max(seconds(fn), 1e-6)))


def matmul_gflops(m: int, k: int, n: int, repeats: int) -> float:
    """The best GFLOP/s of repeated float32 products (m x k) @ (k x n) into a preallocated
    array, each repeat running for about 0.2 s."""
    a, b, out = matmul_operands(m, k, n)
    calls = calls_per(lambda: np.matmul(a, b, out=out), 0.2)
    best = min(
        seconds(lambda: [np.matmul(a, b, out=out) for _ in range(calls)]) / calls
        for _ in range(repeats)
    )
    return 2.0 * m * k * n / best / 1e9


# --- the table -----------------------------------------------------------------------------
@dataclass
class Row:
    benchmark: str
    batch: str
    threads: int
    unit: str
    values: dict[str, float | None] = field(default_factory=dict)  # ours, sklearn, PyTorch
    target: str = ""
    met: bool | None = None
    fmt: str = "{:,.0f}"
    ratios: bool = True  # show ours/sklearn and ours/PyTorch

    def ratio(self, other: str) -> str:
        ours, theirs = self.values.get("ours"), self.values.get(other)
        return "" if not self.ratios or not ours or not theirs else f"{ours / theirs:.2f}x"

    def cells(self) -> list[str]:
        def value(name: str) -> str:
            v = self.values.get(name)
            return "" if v is None else self.fmt.format(v)

        result = "" if self.met is None else ("PASS" if self.met else "BELOW")
        return [
            self.benchmark,
            self.batch,
            str(self.threads),
            self.unit,
            value("ours"),
            value("sklearn"),
            value("PyTorch"),
            self.ratio("sklearn"),
            self.ratio("PyTorch"),
            self.target,
            result,
        ]


def training_row(
    name: str,
    batch: int,
    threads: int,
    times: dict[str, float],
    n: int,
    min_vs_torch: float | None,
) -> Row:
    values = {impl: n / t for impl, t in times.items()}
    row = Row(name, str(batch), threads, "samples/s", values)
    if min_vs_torch is not None:
        row.target = f">= {min_vs_torch:g}x PyTorch"
        if "PyTorch" in values:
            row.met = values["ours"] / values["PyTorch"] >= min_vs_torch
        else:
            row.target += " (PyTorch not installed)"
    return row


# --- the benchmarks ------------------------------------------------------------------------
def bench_mlp_training(
    args, X, y, batch: int, threads: int, min_vs_torch: float, with_peak: bool = False
) -> tuple[Row, float | None]:
    """The MLP row; with ``with_peak`` also the 2048^3 matmul GFLOP/s, timed in turns with
    the training runs (so under the same load), as the median of as many repeats."""
    candidates = {
        "ours": fitting(lambda seed: ours_mlp(batch, seed), X, y),
        "sklearn": fitting(lambda seed: sklearn_mlp(batch, seed), X, y),
    }
    if torch is not None:
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

        def torch_run(seed: int):
            torch.manual_seed(seed)
            model = torch_mlp()
            return lambda: torch_train_epoch(model, Xt, yt, batch, seed)

        candidates["PyTorch"] = torch_run
    peak_calls = 0
    if with_peak:
        a, b, out = matmul_operands(*PEAK_SHAPES["2048x2048x2048"])
        with limited_threads(threads):
            peak_calls = calls_per(lambda: np.matmul(a, b, out=out), 0.3)
        candidates["matmul"] = lambda seed: (
            lambda: [np.matmul(a, b, out=out) for _ in range(peak_calls)]
        )
    with limited_threads(threads):
        times = interleaved(candidates, args.repeats, args.seed, args.pause)
    peak = None
    if with_peak:
        peak = peak_calls * 2.0 * 2048**3 / times.pop("matmul") / 1e9
    row = training_row(
        f"train MLP [784, {HIDDEN}, 10], {len(X):,} samples",
        batch,
        threads,
        times,
        len(X),
        min_vs_torch,
    )
    return row, peak


CNN_NAMES = {
    "one conv": "train CNN conv 20@5x5, pool 2, [100, 10]",
    "two conv": "train CNN conv 20@5x5, pool 2, conv 40@5x5, pool 2, [100, 10]",
}
CNN_TARGETS = {"one conv": 2.0, "two conv": 1.5}  # x PyTorch (issue 14)
MIN_THREAD_SPEEDUP = 1.6  # ours at 2 threads over ours at 1 thread, batch 64 (issue 14)


def bench_cnn_training(args, X, y, batch: int, threads: int, convs: str = "one conv") -> Row:
    candidates = {"ours": fitting(lambda seed: ours_cnn(batch, seed, convs=convs), X, y)}
    if torch is not None:
        Xt = torch.from_numpy(X.reshape(-1, 1, 28, 28))
        yt = torch.from_numpy(y)

        def torch_run(seed: int):
            torch.manual_seed(seed)
            model = torch_cnn(convs)
            return lambda: torch_train_epoch(model, Xt, yt, batch, seed)

        candidates["PyTorch"] = torch_run
    with limited_threads(threads):
        times = interleaved(candidates, args.repeats, args.seed, args.pause)
    return training_row(
        f"{CNN_NAMES[convs]}, {len(X):,} images",
        batch,
        threads,
        times,
        len(X),
        CNN_TARGETS[convs],
    )


def thread_speedup_row(rows: Sequence[Row], convs: str, batch: int) -> Row | None:
    """Ours at 2 threads over ours at 1 thread, from two rows of the same run."""
    by_threads = {
        r.threads: r.values["ours"]
        for r in rows
        if r.benchmark.startswith(CNN_NAMES[convs] + ",") and r.batch == str(batch)
    }
    if 1 not in by_threads or 2 not in by_threads:
        return None
    speedup = by_threads[2] / by_threads[1]
    return Row(
        f"  ... {convs}: ours at 2 threads / ours at 1 thread",
        str(batch),
        2,
        "speed-up",
        {"ours": speedup},
        f">= {MIN_THREAD_SPEEDUP:g}x" if convs == "one conv" and batch == 64 else "",
        speedup >= MIN_THREAD_SPEEDUP if convs == "one conv" and batch == 64 else None,
        fmt="{:.2f}x",
        ratios=False,
    )


CEILING_IMAGES = 32  # per thread: half of a batch of 64


def half_batch_work(seed: int, m: int = CEILING_IMAGES) -> Callable[[], None]:
    """The kinds of NumPy work the single-conv network does on half a batch of 64, on arrays
    of its own: the 5x5 windows of m 28x28 images copied into rows, their product with 20
    filters, 2x2 maxima, an element-wise product and a dense-sized product."""
    rng = np.random.default_rng(seed)
    x = rng.random((m, 28, 28), dtype=np.float32)
    kernel = rng.random((25, 20), dtype=np.float32)
    w = rng.random((20 * 12 * 12, HIDDEN), dtype=np.float32)
    cols = np.empty((m, 24, 24, 5, 5), np.float32)
    z = np.empty((m, 24, 24, 20), np.float32)
    pooled = np.empty((m, 12, 24, 20), np.float32)
    hidden = np.empty((m, HIDDEN), np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(x, (5, 5), axis=(1, 2))

    def run() -> None:
        np.copyto(cols, windows)
        np.matmul(cols.reshape(-1, 25), kernel, out=z.reshape(-1, 20))
        np.maximum(z[:, 0::2], z[:, 1::2], out=pooled)
        np.multiply(z, z, out=z)
        np.matmul(pooled[:, :, :12].reshape(m, -1), w, out=hidden)

    return run


def thread_ceiling_row(args) -> Row:
    """Two threads on two independent halves of the work, over one thread doing both: the
    speed-up this machine allows a split batch now, with no hand-offs or shared arrays."""
    from concurrent.futures import ThreadPoolExecutor

    repeats = 20
    with ThreadPoolExecutor(1) as executor:

        def one_thread(seed: int) -> Callable[[], None]:
            first, second = half_batch_work(seed), half_batch_work(seed + 1)
            return lambda: [(first(), second()) for _ in range(repeats)]

        def two_threads(seed: int) -> Callable[[], None]:
            first, second = half_batch_work(seed), half_batch_work(seed + 1)

            def run() -> None:
                running = executor.submit(lambda: [second() for _ in range(repeats)])
                for _ in range(repeats):
                    first()
                running.result()

            return run

        with limited_threads(1):  # one BLAS thread each, as the split batch runs
            times = interleaved(
                {"one": one_thread, "two": two_threads}, args.repeats, args.seed, args.pause
            )
    return Row(
        "  ... ceiling: 2 threads / 1 thread on two independent halves of such work",
        f"{CEILING_IMAGES}+{CEILING_IMAGES}",
        2,
        "speed-up",
        {"ours": times["one"] / times["two"]},
        fmt="{:.2f}x",
        ratios=False,
    )


def bench_prediction(args, X_train, y_train, X_test, threads: int) -> Row:
    with limited_threads(threads):
        ours = ours_mlp(128, args.seed).fit(X_train, y_train)
        theirs = sklearn_mlp(128, args.seed).fit(X_train, y_train)
        candidates = {
            "ours": lambda seed: lambda: ours.predict_proba(X_test),
            "sklearn": lambda seed: lambda: theirs.predict_proba(X_test),
        }
        if torch is not None:
            model = torch_mlp()
            torch_train_epoch(model, torch.from_numpy(X_train), torch.from_numpy(y_train), 128, 0)
            model.eval()
            Xt = torch.from_numpy(X_test)

            def torch_predict():
                with torch.inference_mode():
                    return torch.softmax(model(Xt), dim=1).numpy()

            candidates["PyTorch"] = lambda seed: torch_predict
        times = interleaved(candidates, max(args.repeats, 5), args.seed, args.pause)
    values = {impl: len(X_test) / t for impl, t in times.items()}
    row = Row(
        f"predict_proba MLP [784, {HIDDEN}, 10], {len(X_test):,} images",
        str(len(X_test)),
        threads,
        "samples/s",
        values,
        ">= 1x sklearn",
    )
    row.met = values["ours"] >= values["sklearn"]
    return row


class limited_threads:
    """BLAS and OpenMP pools (threadpoolctl) and PyTorch limited to ``threads``."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._limits = threadpool_limits(limits=threads)

    def __enter__(self):
        self._limits.__enter__()
        if torch is not None:
            self._torch_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        return self

    def __exit__(self, *exc):
        if torch is not None:
            torch.set_num_threads(self._torch_threads)
        return self._limits.__exit__(*exc)


# --- report --------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def environment(args) -> list[str]:
    versions = (
        f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, "
        + (f"PyTorch {torch.__version__}" if torch is not None else "PyTorch not installed")
    )
    return [
        f"{cpu_model()}, {os.cpu_count()} logical CPUs; {versions}",
        *(f"BLAS: {line}" for line in blas_libraries()),
        f"data: synthetic, {N_FEATURES} float32 features, {N_CLASSES} classes; "
        f"MLP {args.samples:,} training samples, CNN {args.cnn_samples:,}, "
        f"two-conv CNN {args.cnn2_samples:,}, "
        f"prediction {args.predict_samples:,}; one epoch per fit, eta {LEARNING_RATE}; "
        f"medians of {args.repeats} interleaved repeats, {args.pause:g} s pause before each; "
        f"seed {args.seed}",
    ]


NOTES = (
    "Training and prediction figures are medians of repeats taken in turns, all "
    "implementations in one process under the same thread limit; on a shared machine the "
    "figures move with the load, the ratios much less.",
    "In the matmul rows the 'ours' column is NumPy's own float32 product.",
    "Our CNN at 2 threads splits each mini-batch into two halves run at once, each with one "
    "BLAS thread (pipeline.nn.threads); PyTorch uses its own intra-op threads. At a load "
    "average above the 2 cores, 2-thread figures of every implementation fall apart (threads "
    "wait for descheduled partners; PyTorch's spin): read them only beside a low load.",
    "The ceiling row times the kinds of NumPy work the single-conv network does on half a "
    "batch of 64 (window copy, products, maxima, element-wise), two independent halves in two "
    "threads against both in one: what a split batch could gain at best on this machine at "
    "this load, with no serial part and no hand-off between layers.",
    "The MLP's FLOP count is the issue's 6 * (784*100 + 100*10) per training sample; our "
    "first layer skips its input gradient, so it really computes about 2/3 of that.",
)


def markdown_report(env: Sequence[str], rows: Sequence[Row], loads: tuple[str, str]) -> str:
    bullets = "\n".join(f"- {line}" for line in env)
    table = render_markdown(HEADERS, [r.cells() for r in rows])
    notes = "\n".join(f"- {line}" for line in NOTES)
    return (
        "# Performance: ours vs PyTorch CPU, scikit-learn and the NumPy matmul peak\n\n"
        "Written by `python -m benchmarks` (see `benchmarks/bench_performance.py`).\n\n"
        f"{bullets}\n- load average before: {loads[0]}; after: {loads[1]}\n\n{table}\n\n"
        f"{notes}\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Training and prediction throughput of our networks against PyTorch "
        "(when installed), scikit-learn and the NumPy matmul peak (issue 6).",
    )
    parser.add_argument("--samples", type=int, default=20_000, help="MLP training samples")
    parser.add_argument("--cnn-samples", type=int, default=5_000, help="CNN training images")
    parser.add_argument(
        "--cnn2-samples", type=int, default=2_000, help="two-conv CNN training images"
    )
    parser.add_argument(
        "--cnn-batches", type=int, nargs="+", default=[10, 64], help="CNN mini-batch sizes"
    )
    parser.add_argument(
        "--only",
        choices=["all", "cnn"],
        default="all",
        help="'cnn': the CNN rows alone (printed; written only with --output)",
    )
    parser.add_argument("--predict-samples", type=int, default=10_000, help="images to predict")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--mlp-threads", type=int, default=1, help="threads for MLP training")
    parser.add_argument(
        "--cnn-threads",
        type=int,
        nargs="+",
        default=[2, 1],
        help="threads for CNN training, one row each",
    )
    parser.add_argument("--predict-threads", type=int, default=1, help="threads for prediction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--pause",
        type=float,
        default=PAUSE,
        help="seconds to sleep before each timed run, so that thread pools left spinning by "
        "the previous run go idle",
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="where the Markdown table is written"
    )
    parser.add_argument("--no-output", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if min(args.cnn_threads) < 1 or min(args.cnn_batches) < 1:
        parser.error("--cnn-threads and --cnn-batches must be at least 1")
    for name in ("samples", "cnn_samples", "cnn2_samples", "predict_samples", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("mlp_threads", "predict_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    n_total = max(args.samples, args.cnn_samples) + args.predict_samples
    X, y = make_data(n_total, args.seed)
    X_test = X[-args.predict_samples :]
    X_train, y_train = X[: n_total - args.predict_samples], y[: n_total - args.predict_samples]
    env = environment(args)
    print("\n".join(env), flush=True)
    load_before = load_average()
    print(f"load average before: {load_before}", flush=True)

    rows: list[Row] = []
    Xm, ym = X_train[: args.samples], y_train[: args.samples]
    if args.only == "all":
        rows.append(bench_mlp_training(args, Xm, ym, 10, args.mlp_threads, 2.0)[0])
        progress("MLP batch 10")
        mlp128, peak = bench_mlp_training(args, Xm, ym, 128, args.mlp_threads, 1.0, with_peak=True)
        rows.append(mlp128)
        progress("MLP batch 128")
    rows.extend(bench_cnns(args, X_train, y_train))
    if args.only == "cnn":
        return finish(args, env, rows, load_before)
    rows.append(bench_prediction(args, Xm, ym, X_test, args.predict_threads))
    progress("prediction")

    thread_counts = sorted({args.mlp_threads, *args.cnn_threads, args.predict_threads})
    peaks: dict[tuple[str, int], float] = {}
    for threads in thread_counts:
        with limited_threads(threads):
            for label, shape in PEAK_SHAPES.items():
                peaks[label, threads] = matmul_gflops(*shape, repeats=args.repeats)
                rows.append(
                    Row(
                        f"reference: NumPy float32 matmul {label}, best of {args.repeats}",
                        "",
                        threads,
                        "GFLOP/s",
                        {"ours": peaks[label, threads]},
                        "reference",
                        fmt="{:,.1f}",
                    )
                )
    progress("matmul peak")

    rows.append(
        Row(
            "reference: NumPy float32 matmul 2048x2048x2048, median, in turns with MLP batch 128",
            "",
            args.mlp_threads,
            "GFLOP/s",
            {"ours": peak},
            "reference",
            fmt="{:,.1f}",
        )
    )
    gflops = {k: v * MLP_FLOP_PER_SAMPLE / 1e9 for k, v in mlp128.values.items()}
    rows.append(
        Row(
            "train MLP batch 128 at 6*(784*100+100*10) FLOP/sample",
            "128",
            args.mlp_threads,
            "GFLOP/s",
            gflops,
            fmt="{:,.1f}",
        )
    )
    rows.append(
        Row(
            "  ... as a fraction of that matmul peak",
            "128",
            args.mlp_threads,
            "% of peak",
            {k: 100 * v / peak for k, v in gflops.items()},
            ">= 50%",
            100 * gflops["ours"] / peak >= 50,
            fmt="{:.0f}%",
            ratios=False,
        )
    )
    return finish(args, env, rows, load_before)


def bench_cnns(args, X_train, y_train) -> list[Row]:
    """The CNN rows: each network at each batch size and thread count, then the speed-ups."""
    rows: list[Row] = []
    for convs, n in (("one conv", args.cnn_samples), ("two conv", args.cnn2_samples)):
        Xc, yc = X_train[:n], y_train[:n]
        for batch in args.cnn_batches:
            for threads in args.cnn_threads:
                rows.append(bench_cnn_training(args, Xc, yc, batch, threads, convs))
                progress(f"CNN {convs}, batch {batch}, {threads} thread(s)")
        speedups = (thread_speedup_row(rows, convs, batch) for batch in args.cnn_batches)
        rows.extend(row for row in speedups if row is not None)
    if 1 in args.cnn_threads and 2 in args.cnn_threads:
        rows.append(thread_ceiling_row(args))
        progress("two-thread ceiling")
    return rows


def finish(args, env: Sequence[str], rows: Sequence[Row], load_before: str) -> int:
    load_after = load_average()
    print(f"load average after: {load_after}\n", flush=True)
    print(render_text(HEADERS, [r.cells() for r in rows]))
    print("\n".join(f"\n{line}" for line in NOTES))
    if not args.no_output and (args.only == "all" or args.output != DEFAULT_OUTPUT):
        write_text(args.output, markdown_report(env, rows, (load_before, load_after)))
        print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
