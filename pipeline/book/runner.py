"""What every book experiment shares: its data, one MLflow run per row, timing.

An experiment module gets a :class:`BookContext` (the composed config, the prepared data as
flat float32 rows) and trains its rows through :meth:`BookContext.fit_row`, which opens one
MLflow run per row in the chapter's experiment (``nndl-book-ch5``; tags ``chapter``,
``row``, ``book_experiment``, ``seed``), logs the row's settings and every epoch's figures,
and closes the run FAILED when training raises.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits

from pipeline.config import one_line, to_container
from pipeline.data.datasets import PreparedData, load_dataset
from pipeline.errors import ConfigError
from pipeline.estimators import EpochInfo
from pipeline.tracking import Tracker, git_commit, tracker_from_config

# The book trains on MNIST's 50,000 training images; lambda enters the update as lambda / n,
# so a lambda meant for 50,000 images is scaled by n / 50,000 on a smaller training set.
BOOK_TRAINING_SET_SIZE = 50_000


@dataclass
class Split:
    """One split as the estimators take it: X (n, h*w) float32 rows, y (n,) labels."""

    X: np.ndarray
    y: np.ndarray


@dataclass
class RowResult:
    """One trained row (or one seed of it): the figures a page and a test look at."""

    row: str
    seed: int
    history: list[dict[str, Any]]
    metrics: dict[str, float]
    seconds: float
    estimator: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BookContext:
    """The composed config of one experiment and the data it runs on."""

    cfg: DictConfig
    data: PreparedData | None
    train: Split | None
    val: Split | None
    test: Split | None
    command: str = ""

    @property
    def book(self) -> DictConfig:
        return self.cfg.book

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.data.image_shape

    # --- data ---------------------------------------------------------------------------
    def page_heading(self) -> dict[str, Any]:
        """The fields every experiment's :class:`Page` starts with."""
        return {
            "name": self.book.name,
            "chapter": self.book.chapter,
            "title": self.book.title,
            "command": self.command,
            "data": self.data_summary(),
        }

    def data_summary(self) -> dict[str, Any]:
        """Name, source and split sizes of the data (for the page and the MLflow tags)."""
        if self.data is None:
            return {"dataset": "synthetic", "full_mnist": False}
        return {
            "dataset": self.data.name,
            "source": self.data.source,
            "n_train": len(self.train.y),
            "n_val": len(self.val.y),
            "n_test": len(self.test.y),
            "image_shape": list(self.image_shape),
            "full_mnist": self.data.name == "mnist",
        }

    def scaled_l2(self, l2: float, n_train: int | None = None) -> float:
        """lambda for ``n_train`` images when the config's lambda is the book's for 50,000
        (``book.l2_reference_n``); unchanged when that is null."""
        reference = self.book.get("l2_reference_n")
        if not reference:
            return float(l2)
        n = n_train if n_train is not None else len(self.train.y)
        return float(l2) * n / float(reference)

    # --- tracking -----------------------------------------------------------------------
    def tracker(self) -> Tracker:
        """A tracker on the chapter's MLflow experiment (``nndl-book-ch<chapter>``)."""
        tracking = OmegaConf.merge(
            self.cfg.tracking, {"experiment": f"{self.book.mlflow_prefix}-ch{self.book.chapter}"}
        )
        return tracker_from_config(OmegaConf.create({"tracking": tracking}))

    @contextlib.contextmanager
    def tracked_row(self, row: str, seed: int, settings: dict[str, Any]) -> Iterator[Tracker]:
        """One MLflow run for ``row`` (and ``seed``); ended FAILED if the block raises."""
        tracker = self.tracker()
        summary = self.data_summary()
        tracker.start(
            run_name=f"{self.book.name}/{row}" + (f"/seed{seed}" if self.seeds() != [seed] else ""),
            tags={
                "chapter": str(self.book.chapter),
                "row": row,
                "book_experiment": str(self.book.name),
                "seed": str(seed),
                "dataset": summary["dataset"],
                "git_commit": git_commit(),
            },
        )
        tracker.log_config(
            OmegaConf.create(
                {"row": _plain(settings), "seed": seed, "data": {"name": summary["dataset"]}}
            )
        )
        try:
            yield tracker
        except BaseException:
            tracker.end(status="FAILED")
            raise
        tracker.end()

    def seeds(self) -> list[int]:
        return [int(s) for s in self.book.seeds]

    def row_params(self, row: DictConfig, n_train: int | None = None) -> dict[str, Any]:
        """Estimator parameters of ``row``: ``book.network`` updated by the row's ``params``,
        ``book.epochs`` when set (else the row's or the network's epochs), lambda scaled to
        the training set size (see :meth:`scaled_l2`)."""
        params = {**to_container(self.book.network), **to_container(row.get("params", {}))}
        if self.book.get("epochs") is not None:
            params["epochs"] = int(self.book.epochs)
        params["l2"] = self.scaled_l2(params.get("l2", 0.0), n_train)
        for key in ("hidden_layer_sizes", "conv_layers"):
            if key in params:
                params[key] = _tuples(params[key])
        return params

    def settings_line(self) -> str:
        """The shared settings in the book's symbols, for the page."""
        net = to_container(self.book.network)
        names = {"learning_rate": "eta", "batch_size": "m", "l2": "lambda", "epochs": "epochs"}
        parts = [f"{names.get(k, k)} = {v}" for k, v in net.items()]
        if self.book.get("epochs") is not None:
            parts.append(f"**epochs cut to {self.book.epochs}** (book.epochs)")
        if self.book.get("l2_reference_n"):
            parts.append(
                f"lambda scaled by n / {self.book.l2_reference_n:,} (the book's lambda is for "
                f"{self.book.l2_reference_n:,} images; lambda/n is what the update uses)"
            )
        return "; ".join(parts)

    # --- training -------------------------------------------------------------------------
    def fit_row(
        self,
        row: str,
        estimator,
        seed: int,
        train: Split | None = None,
        epoch_metrics: Sequence[Callable[[EpochInfo], dict[str, float]]] = (),
        settings: dict[str, Any] | None = None,
    ) -> RowResult:
        """Fit ``estimator`` on ``train`` (default: the training split) with validation every
        epoch; score validation and test once at the end; track it all as one run.

        Each of ``epoch_metrics`` is called after every epoch; the figures it returns join
        the epoch's record (``history``) and its MLflow metrics.
        """
        train = train or self.train
        history: list[dict[str, Any]] = []

        def record(info: EpochInfo) -> None:
            entry = {"epoch": info.epoch, **info.metrics()}
            for extra in epoch_metrics:
                entry.update(extra(info))
            history.append(entry)

        params = settings if settings is not None else estimator.get_params()
        with self.tracked_row(row, seed, {**params, "n_train": len(train.y)}) as tracker:
            started = time.perf_counter()
            with threadpool_limits(limits=int(self.book.threads)):
                estimator.fit(
                    train.X,
                    train.y,
                    validation_data=(self.val.X, self.val.y),
                    callbacks=[
                        record,
                        lambda info: tracker.log_metrics(
                            {k: v for k, v in history[-1].items() if k != "epoch"},
                            step=info.epoch,
                        ),
                    ],
                )
                seconds = time.perf_counter() - started
                metrics = {
                    "final_val_accuracy": float(estimator.validation_scores_[-1]),
                    "best_val_accuracy": float(estimator.best_validation_score_),
                    "test_accuracy": float(estimator.score(self.test.X, self.test.y)),
                    "epochs": float(estimator.n_iter_),
                    "train_seconds": round(seconds, 2),
                }
            tracker.log_metrics(metrics)
        return RowResult(row, seed, history, metrics, seconds, estimator)


def _plain(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as MLflow params: tuples and arrays as lists, everything else as is."""
    return {
        k: (list(map(_plain_value, v)) if isinstance(v, list | tuple) else _plain_value(v))
        for k, v in settings.items()
    }


def _plain_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _tuples(value: Any) -> Any:
    """Lists from the config as tuples (the estimators' sequence parameters)."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def as_split(X: np.ndarray, y: np.ndarray) -> Split:
    return Split(np.ascontiguousarray(X.reshape(len(X), -1), dtype=np.float32), np.asarray(y))


def check_book(book: DictConfig, estimator: type | None) -> None:
    """The experiment's settings, checked before any data is read or run started: the
    counts, and every row's estimator parameters (``book.network`` with the row's
    ``params``) against ``estimator``'s own constraints. Raises ConfigError naming the key."""
    values = to_container(book)
    seeds = values.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"book.seeds: expected a non-empty list of seeds, got {seeds!r}")
    for i, seed in enumerate(seeds):
        _check_count(seed, f"book.seeds[{i}]", 0)
    for key, low in (("epochs", 1), ("n_train", 10), ("l2_reference_n", 1)):
        _check_count(values.get(key), f"book.{key}", low, optional=True)
    _check_count(values.get("threads", 1), "book.threads", 1)
    rows = values.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"book.rows: expected a non-empty list of rows, got {rows!r}")
    if estimator is None:
        return
    for i, row in enumerate(rows):
        params = {**(values.get("network") or {}), **(row.get("params") or {})}
        if values.get("epochs") is not None:
            params["epochs"] = values["epochs"]
        try:
            estimator(**params).check_params()
        except (TypeError, ValueError) as err:  # an unknown name, a value out of range
            raise ConfigError(f"book.rows[{i}] ({row.get('name')}): {one_line(err)}") from None


def _check_count(value: Any, key: str, low: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        expected = f"an integer >= {low}" + (" or null" if optional else "")
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def make_context(cfg: DictConfig, needs_data: bool = True) -> BookContext:
    """Load the ``data`` config's splits (``book.n_train`` caps the training split)."""
    if not needs_data:
        return BookContext(cfg, None, None, None, None)
    data = load_dataset(to_container(cfg.data), int(cfg.seed), cfg.paths.cache)
    X, y = data.splits["train"]
    n_train = cfg.book.get("n_train")
    if n_train is not None:
        X, y = X[:n_train], y[:n_train]
    return BookContext(
        cfg,
        data,
        as_split(X, y),
        as_split(*data.splits["val"]),
        as_split(*data.splits["test"]),
    )


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
