"""Training throughput: our NumPy networks against scikit-learn's MLPClassifier.

What is measured
----------------
Samples per second of training (mini-batch SGD), side by side in one process:

* ``pipeline.MLPClassifier`` and ``sklearn.neural_network.MLPClassifier`` with the same
  architecture, [784, 30, 10] and [784, 100, 10], sigmoid ("logistic") hidden neurons, plain
  SGD (no momentum, no Nesterov, constant learning rate, no L2, no early stopping, no
  convergence test that could stop early, shuffled every epoch), the same number of epochs,
  at batch sizes 10 and 128. Ours uses the cross-entropy cost with sigmoid outputs (the
  book's network2.py); sklearn uses its softmax / log-loss output, which it does not let one
  change. Both train on the same float32 data and keep float32.
* ``pipeline.CNNClassifier``: the chapter-6 network (conv 20@5x5, 2x2 max-pool, dense 100,
  softmax with the log-likelihood cost, the estimator's default ReLU activation) at batch
  sizes 10 and 64 on 28x28 images. There is no sklearn counterpart, so no ratio.

How
---
The data are synthetic and seeded: 10 classes of Gaussian blobs in [0, 1]^784 (a random
"prototype image" per class plus noise), float32. For every configuration each estimator
is trained ``--repeats`` times from scratch with ``fit`` for ``--epochs`` epochs; ours and
sklearn's alternate, so that a noisy neighbour on a shared machine slows both alike. The
time of a ``fit`` (input checks, shuffling and all mini-batch steps; neither estimator scores
anything per epoch here) divided by the number of epochs is one s/epoch figure; the table
reports the median and samples/s = training samples / median s/epoch. Every estimator is
warmed up once on a small problem before timing. BLAS and OpenMP pools are limited to
``--threads`` threads for both (threadpoolctl), and the BLAS libraries are printed.

Targets (issue 2): our MLP at least 3x sklearn's throughput at batch 10 and at least 1.2x
at batch 128. A figure below target is printed as BELOW; the exit status stays 0 (this is a
benchmark, not a test).

Run ``python benchmarks/bench_training.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sklearn
from sklearn.base import BaseEstimator
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
    time_call,
    write_atomic,
)
from benchmarks.common import sklearn_mlp as common_sklearn_mlp  # noqa: E402
from pipeline import CNNClassifier, MLPClassifier  # noqa: E402

LEARNING_RATE = 0.1  # the same eta for both MLPs; it does not change the work per step
MLP_HIDDEN = (30, 100)
MLP_BATCHES = (10, 128)
CNN_BATCHES = (10, 64)
TARGETS = {10: 3.0, 128: 1.2}  # batch size -> minimum ours/sklearn throughput ratio
HEADERS = (
    "implementation",
    "network",
    "batch",
    "threads",
    "median s/epoch",
    "samples/s",
    "ours/sklearn",
    "target",
)


@dataclass(frozen=True)
class Result:
    """The timing of one estimator on one configuration."""

    implementation: str
    network: str
    batch: int
    threads: int
    seconds_per_epoch: float  # median over the repeats
    n_samples: int
    ratio: float | None = None  # ours / sklearn samples per second
    target: float | None = None

    @property
    def samples_per_second(self) -> float:
        return self.n_samples / self.seconds_per_epoch

    @property
    def verdict(self) -> str:
        if self.ratio is None or self.target is None:
            return ""
        return f">= {self.target:g}x: {'PASS' if self.ratio >= self.target else 'BELOW'}"

    def cells(self) -> list[str]:
        return [
            self.implementation,
            self.network,
            str(self.batch),
            str(self.threads),
            f"{self.seconds_per_epoch:.4f}",
            f"{self.samples_per_second:,.0f}",
            "" if self.ratio is None else f"{self.ratio:.2f}x",
            self.verdict,
        ]


# --- estimators ----------------------------------------------------------------------------
def ours_mlp(hidden: int, batch: int, epochs: int, seed: int) -> MLPClassifier:
    return MLPClassifier(
        (hidden,),
        activation="sigmoid",
        cost="cross_entropy",
        learning_rate=LEARNING_RATE,
        batch_size=batch,
        epochs=epochs,
        momentum=0.0,
        random_state=seed,
        dtype="float32",
    )


def sklearn_mlp(hidden: int, batch: int, epochs: int, seed: int) -> SklearnMLP:
    return common_sklearn_mlp(hidden, batch, epochs, seed, LEARNING_RATE)


def ours_cnn(batch: int, epochs: int, seed: int) -> CNNClassifier:
    return CNNClassifier(
        conv_layers=((20, 5, 2),),
        hidden_layer_sizes=(100,),
        cost="log_likelihood",
        batch_size=batch,
        epochs=epochs,
        momentum=0.0,
        random_state=seed,
        dtype="float32",
    )


# --- timing --------------------------------------------------------------------------------
def seconds_per_epoch(estimator: BaseEstimator, X: np.ndarray, y: np.ndarray, epochs: int) -> float:
    """Seconds of one ``fit`` divided by the epochs it trained (checked to be ``epochs``)."""
    seconds = time_call(lambda: estimator.fit(X, y))
    if estimator.n_iter_ != epochs:
        raise RuntimeError(
            f"{type(estimator).__module__}.{type(estimator).__name__} trained "
            f"{estimator.n_iter_} epochs instead of {epochs}: the comparison would be unfair"
        )
    return seconds / epochs


def warm_up(X: np.ndarray, y: np.ndarray, seed: int) -> None:
    """One small untimed fit of every estimator: imports, caches and BLAS buffers."""
    for estimator in (ours_mlp(30, 10, 1, seed), sklearn_mlp(30, 10, 1, seed)):
        estimator.fit(X[:500], y[:500])
    ours_cnn(10, 1, seed).fit(X[:100], y[:100])


def bench_mlp(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> list[Result]:
    """Ours and sklearn's MLP at every (hidden size, batch), alternating within repeats."""
    results = []
    for hidden in MLP_HIDDEN:
        network = f"[{N_FEATURES}, {hidden}, {N_CLASSES}]"
        for batch in MLP_BATCHES:
            ours, theirs = [], []
            for repeat in range(args.repeats):
                seed = args.seed + repeat
                ours.append(
                    seconds_per_epoch(ours_mlp(hidden, batch, args.epochs, seed), X, y, args.epochs)
                )
                theirs.append(
                    seconds_per_epoch(
                        sklearn_mlp(hidden, batch, args.epochs, seed), X, y, args.epochs
                    )
                )
            t_ours, t_theirs = statistics.median(ours), statistics.median(theirs)
            common = dict(network=network, batch=batch, threads=args.threads, n_samples=len(X))
            results.append(Result("sklearn", seconds_per_epoch=t_theirs, **common))
            results.append(
                Result(
                    "ours",
                    seconds_per_epoch=t_ours,
                    ratio=t_theirs / t_ours,
                    target=TARGETS.get(batch),
                    **common,
                )
            )
            print(f"  done: MLP {network} batch {batch}", file=sys.stderr, flush=True)
    return results


def bench_cnn(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> list[Result]:
    """Our chapter-6 CNN at every batch size."""
    results = []
    for batch in CNN_BATCHES:
        times = [
            seconds_per_epoch(ours_cnn(batch, args.epochs, args.seed + r), X, y, args.epochs)
            for r in range(args.repeats)
        ]
        results.append(
            Result(
                "ours CNN",
                "conv 20@5x5, pool 2, [100, 10] softmax",
                batch,
                args.threads,
                statistics.median(times),
                len(X),
            )
        )
        print(f"  done: CNN batch {batch}", file=sys.stderr, flush=True)
    return results


# --- report --------------------------------------------------------------------------------
def environment(args: argparse.Namespace) -> list[str]:
    """Lines describing the run: versions, threads, BLAS, sizes."""
    return [
        f"Python {platform.python_version()}, NumPy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, {platform.machine()}",
        f"threads (BLAS and OpenMP, both implementations): {args.threads}",
        *(f"BLAS: {line}" for line in blas_libraries()),
        f"MLP: {args.samples} samples x {N_FEATURES} features float32, "
        f"CNN: {args.cnn_samples} 28x28 images; {args.epochs} epoch(s) per fit, "
        f"median of {args.repeats} fits; learning rate {LEARNING_RATE}, seed {args.seed}",
    ]


def target_lines(results: Sequence[Result]) -> list[str]:
    return [
        f"our MLP {r.network} batch {r.batch}: {r.ratio:.2f}x sklearn, target {r.verdict}"
        for r in results
        if r.ratio is not None and r.target is not None
    ]


def markdown_report(env: Sequence[str], results: Sequence[Result]) -> str:
    table = render_markdown(HEADERS, [r.cells() for r in results])
    bullets = "\n".join(f"- {line}" for line in env)
    targets = "\n".join(f"- {line}" for line in target_lines(results))
    return (
        f"# Training throughput\n\n{bullets}\n\n{table}\n\n"
        f"Targets (ours/sklearn samples/s):\n\n{targets}\n"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Samples/s of training: our MLP vs sklearn's MLPClassifier, and our CNN."
    )
    parser.add_argument("--samples", type=int, default=10_000, help="MLP training samples")
    parser.add_argument("--cnn-samples", type=int, default=2_000, help="CNN training images")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed fit")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits per configuration")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads for all")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and estimators")
    parser.add_argument("--no-cnn", action="store_true", help="skip the CNN measurements")
    parser.add_argument("--output", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args(argv)
    for name in ("samples", "cnn_samples", "epochs", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X, y = make_data(max(args.samples, args.cnn_samples), args.seed)
    with threadpool_limits(limits=args.threads):
        env = environment(args)
        print("\n".join(env), flush=True)
        warm_up(X, y, args.seed)
        results = bench_mlp(args, X[: args.samples], y[: args.samples])
        if not args.no_cnn:
            results += bench_cnn(args, X[: args.cnn_samples], y[: args.cnn_samples])
    print()
    print(render_text(HEADERS, [r.cells() for r in results]))
    print()
    print("Targets (ours/sklearn samples/s):")
    print("\n".join(f"  {line}" for line in target_lines(results)))
    if args.output is not None:
        write_atomic(args.output, markdown_report(env, results))
        print(f"\nMarkdown table written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
