"""Fashion-MNIST: which settings of our networks beat the book's (issue 11)?

Trains named candidate configurations of ``MLPClassifier`` / ``CNNClassifier`` on the
Fashion-MNIST training split (50,000 images, optionally augmented), scores the validation
split (10,000) every epoch, and appends one JSON line per run to ``--out``: the config, the
validation accuracy per epoch, seconds per epoch, the best validation accuracy and its epoch.
Settings are chosen on validation only; ``--test-best`` scores the test split once, for the
run (of those named) with the best validation accuracy.

    python benchmarks/fashion_explore.py mlp_relu300_mom --epochs 12
    python benchmarks/fashion_explore.py --list
    python benchmarks/fashion_explore.py mlp_a mlp_b --test-best   # test: best on val only

BLAS runs on ``--threads`` threads (default 1: the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from pipeline.config import compose_config
from pipeline.data.datasets import load_dataset
from pipeline.data.transforms import pixel_shifts
from pipeline.estimators import CNNClassifier, MLPClassifier

BOOK_MLP = dict(
    hidden_layer_sizes=[100], activation="sigmoid", cost="cross_entropy", init="scaled",
    learning_rate=0.5, l2=5.0, batch_size=10,
)  # fmt: skip
RELU_MLP = dict(activation="relu", cost="log_likelihood", init="he")
RELU_CNN = dict(activation="relu", cost="log_likelihood", init="he")

# name -> (estimator, parameters, augmentation); augmentation is a "+"-joined list of
# "flip" (mirror left-right) and "shift" (the book's four one-pixel shifts).
CANDIDATES: dict[str, tuple[str, dict[str, Any], str]] = {
    "mlp_book": ("mlp", BOOK_MLP, ""),
    "mlp_relu300_mom": (
        "mlp",
        dict(
            RELU_MLP,
            hidden_layer_sizes=[300],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=1.0,
        ),
        "",
    ),  # fmt: skip
    "mlp_relu300_mom_do": (
        "mlp",
        dict(
            RELU_MLP,
            hidden_layer_sizes=[300],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=1.0,
            dropout=0.3,
        ),
        "",
    ),  # fmt: skip
    "mlp_relu300_halve_flip": (
        "mlp",
        dict(
            RELU_MLP,
            hidden_layer_sizes=[300],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=1.0,
            dropout=0.3,
            learning_rate_schedule="halving",
            schedule_patience=2,
        ),
        "flip",
    ),  # fmt: skip
    "mlp_relu500x2_mom_do": (
        "mlp",
        dict(
            RELU_MLP,
            hidden_layer_sizes=[500, 500],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=1.0,
            dropout=0.3,
            learning_rate_schedule="halving",
            schedule_patience=2,
        ),
        "",
    ),  # fmt: skip
    "mlp_relu500x2_mom_do_flip": (
        "mlp",
        dict(
            RELU_MLP,
            hidden_layer_sizes=[500, 500],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=1.0,
            dropout=0.3,
        ),
        "flip",
    ),  # fmt: skip
    "cnn_book": (
        "cnn",
        dict(
            RELU_CNN,
            conv_layers=[(20, 5, 2)],
            hidden_layer_sizes=[100],
            learning_rate=0.1,
            l2=0.1,
            batch_size=10,
        ),
        "",
    ),  # fmt: skip
    "cnn2_mom_do": (
        "cnn",
        dict(
            RELU_CNN,
            conv_layers=[(20, 5, 2), (40, 5, 2)],
            hidden_layer_sizes=[128],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=1.0,
            dropout=0.4,
        ),
        "",
    ),  # fmt: skip
    "cnn2_halve_flip": (
        "cnn",
        dict(
            RELU_CNN,
            conv_layers=[(20, 5, 2), (40, 5, 2)],
            hidden_layer_sizes=[256],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=5.0,
            dropout=0.5,
            learning_rate_schedule="halving",
            schedule_patience=2,
        ),
        "flip",
    ),  # fmt: skip
    "cnn2_halve": (
        "cnn",
        dict(
            RELU_CNN,
            conv_layers=[(20, 5, 2), (40, 5, 2)],
            hidden_layer_sizes=[256],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=5.0,
            dropout=0.5,
            learning_rate_schedule="halving",
            schedule_patience=2,
        ),
        "",
    ),  # fmt: skip
    "mlp_relu300_halve": (
        "mlp",
        dict(
            RELU_MLP,
            hidden_layer_sizes=[300],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=1.0,
            dropout=0.3,
            learning_rate_schedule="halving",
            schedule_patience=2,
        ),
        "",
    ),  # fmt: skip
    "cnn2_mom_do_flip": (
        "cnn",
        dict(
            RELU_CNN,
            conv_layers=[(20, 5, 2), (40, 5, 2)],
            hidden_layer_sizes=[128],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=1.0,
            dropout=0.4,
        ),
        "flip",
    ),  # fmt: skip
    "cnn2w_mom_do_flip": (
        "cnn",
        dict(
            RELU_CNN,
            conv_layers=[(32, 5, 2), (64, 5, 2)],
            hidden_layer_sizes=[256],
            learning_rate=0.02,
            momentum=0.9,
            batch_size=32,
            l2=1.0,
            dropout=0.5,
        ),
        "flip",
    ),  # fmt: skip
}
# conf/model/cnn_fashion.yaml with conf/train/cnn_fashion.yaml: pairs of 3x3 convolutions.
CANDIDATES["cnn3x3_halve_flip"] = (
    "cnn",
    dict(
        CANDIDATES["cnn2w_mom_do_flip"][1],
        conv_layers=[(32, 3, 1), (32, 3, 2), (64, 3, 1), (64, 3, 2)],
        l2=5.0,
        learning_rate_schedule="halving",
        schedule_patience=2,
    ),
    "flip",
)


def load_splits(cache_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Fashion-MNIST as the pipeline loads it: train/val/test, X (n, 28, 28) in [0, 1]."""
    cfg = compose_config(["data=fashion_mnist"])
    return load_dataset(dict(cfg.data), seed=42, cache_dir=cache_dir).splits


def augmented(X: np.ndarray, y: np.ndarray, kinds: str, seed: int):
    """(X, y) plus the copies ``kinds`` asks for, shuffled; X (n, 28, 28)."""
    parts_X, parts_y = [X], [y]
    for kind in filter(None, kinds.split("+")):
        if kind == "flip":
            parts_X.append(X[:, :, ::-1])
            parts_y.append(y)
        elif kind == "shift":
            parts_X.append(pixel_shifts(X))
            parts_y.append(np.tile(y, 4))
        else:
            raise ValueError(f"unknown augmentation {kind!r}")
    X, y = np.concatenate(parts_X), np.concatenate(parts_y)
    order = np.random.default_rng(seed).permutation(len(y))
    return np.ascontiguousarray(X[order]), y[order]


def run(name: str, epochs: int, splits, seed: int, overrides: dict, aug: str | None = None):
    """Train candidate ``name`` (with augmentation ``aug`` instead of its own, if given);
    the fitted model and its validation curve and timings."""
    kind, params, own_aug = CANDIDATES[name]
    aug = own_aug if aug is None else aug
    params = dict(params, **overrides)
    X_tr, y_tr = augmented(*splits["train"], aug, seed)
    X_val, y_val = splits["val"]
    flat = lambda X: X.reshape(len(X), -1)  # noqa: E731
    estimator = MLPClassifier if kind == "mlp" else CNNClassifier
    model = estimator(
        **params, epochs=epochs, random_state=seed, early_stopping=True, n_iter_no_change=5,
        track_gradient_norms=False,
    )  # fmt: skip
    stamps = [time.perf_counter()]

    def report(info) -> None:
        stamps.append(time.perf_counter())
        print(
            f"  {name} epoch {info.epoch:2d}  val {info.validation_accuracy:.4f}  "
            f"eta {info.learning_rate:.4g}  {stamps[-1] - stamps[-2]:.1f} s",
            flush=True,
        )

    model.fit(flat(X_tr), y_tr, validation_data=(flat(X_val), y_val), callbacks=[report])
    seconds = np.diff(stamps)
    scores = model.validation_scores_
    result = {
        "name": name,
        "kind": kind,
        "params": params,
        "augment": aug or "none",
        "n_train": len(y_tr),
        "epochs_run": len(scores),
        "val_curve": [round(s, 4) for s in scores],
        "best_val": max(scores),
        "best_epoch": int(np.argmax(scores)) + 1,
        "s_per_epoch": float(np.median(seconds)),
        "load": os.getloadavg()[0],
    }
    return model, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="candidate names (see --list)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--test-best",
        action="store_true",
        help="score the test split once, for the run with the best validation accuracy",
    )
    parser.add_argument("--set", default="{}", help='JSON overrides, e.g. {"l2": 2.0}')
    parser.add_argument(
        "--augment", default=None, help='instead of the candidates\' own: "", "flip", "shift+flip"'
    )
    parser.add_argument("--cache", default="/tmp/fcache")
    parser.add_argument("--out", default="/tmp/fashion_explore.jsonl")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        for name, (kind, params, aug) in CANDIDATES.items():
            print(f"{name:28s} {kind} {params} augment={aug or 'none'}")
        return
    splits = load_splits(args.cache)
    runs = []
    for name in args.names:
        with threadpool_limits(args.threads):
            model, result = run(
                name, args.epochs, splits, args.seed, json.loads(args.set), args.augment
            )
        print(json.dumps(result), flush=True)
        append(args.out, result)
        runs.append((model, result))
    if args.test_best and runs:
        # The chosen run's model holds its best-validation weights (early stopping restores them).
        model, result = max(runs, key=lambda run: run[1]["best_val"])
        X_te, y_te = splits["test"]
        with threadpool_limits(args.threads):
            accuracy = float(model.score(X_te.reshape(len(X_te), -1), y_te))
        chosen = {"chosen": result["name"], "best_val": result["best_val"], "test_acc": accuracy}
        print(json.dumps(chosen), flush=True)
        append(args.out, chosen)


def append(path: str, record: dict) -> None:
    """One JSON line appended to ``path``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
