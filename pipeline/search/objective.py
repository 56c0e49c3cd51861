"""One trial: train the configured network with the sampled values, report validation
accuracy after every epoch (the pruner's resource is epochs), return the best of them."""

from __future__ import annotations

import warnings

import numpy as np
import optuna
from omegaconf import DictConfig
from sklearn.base import is_classifier
from threadpoolctl import threadpool_limits

from pipeline.estimators import DivergenceError
from pipeline.factory import build_estimator, training_splits
from pipeline.search.recovery import WORKER_ATTR, worker_identity
from pipeline.search.space import estimator_overrides, suggest
from pipeline.tracking import tracker_from_config

BASELINE_ATTR = "baseline"  # user attribute of the enqueued trial of configured values


class Objective:
    """Train one trial's network; report validation accuracy per epoch for pruning.

    The training rows are the augmented training split, or a random subset of
    ``search.max_train_samples`` of them (the same for every trial); validation is the
    prepared validation split. The baseline trial (the configured values) is never pruned:
    the best trial is then at least the baseline at the full epoch budget.
    """

    def __init__(self, cfg: DictConfig, parent_run_id: str | None, space: dict) -> None:
        self.cfg = cfg
        self.space = space
        self.parent_run_id = parent_run_id
        self.tracker = tracker_from_config(cfg)
        train, val = training_splits(cfg)
        classify = is_classifier(build_estimator(cfg, train.image_shape))
        rows = training_rows(train.y, cfg.search.max_train_samples, cfg.seed, classify)
        self.X, self.y = train.X[rows], train.y[rows]
        # The book's L2 term is (lambda / 2n) sum w^2: on n' < n rows the same lambda would
        # decay weights n/n' times harder. Trials use lambda n'/n, so a searched lambda
        # means what it will mean when train fits all n rows.
        self.penalty_scale = len(rows) / len(train.y)
        self.val = val
        self.image_shape = train.image_shape

    def claim(self, trial: optuna.Trial) -> None:
        """Mark the trial as this process's (recovery tells a dead worker's trial by it)."""
        trial.set_user_attr(WORKER_ATTR, worker_identity())

    def __call__(self, trial: optuna.Trial) -> float:
        with warnings.catch_warnings():  # a configured value outside the searched range
            warnings.filterwarnings("ignore", "Fixed parameter .* out of range", UserWarning)
            values = suggest(trial, self.space)
        overrides = {"epochs": int(self.cfg.search.epochs), **estimator_overrides(values, self.cfg)}
        if self.penalty_scale < 1:
            for name in ("l2", "l1"):
                configured = overrides.get(name, self.cfg.train.get(name, 0.0))
                overrides[name] = float(configured) * self.penalty_scale
        try:
            estimator = build_estimator(self.cfg, self.image_shape, overrides)
        except Exception as err:
            _keep_reason(trial, err)
            raise
        baseline = bool(trial.user_attrs.get(BASELINE_ATTR))
        run_id = None
        if self.parent_run_id:
            name = f"trial-{trial.number}" + (" (baseline)" if baseline else "")
            run_id = self.tracker.start_child(
                self.parent_run_id, name, {"trial": trial.number, **values}
            )
            trial.set_user_attr("mlflow_run_id", run_id)

        def report(info) -> None:
            trial.report(info.validation_accuracy, info.epoch)
            self.tracker.log_child_metrics(
                run_id,
                {"val_accuracy": info.validation_accuracy, "train_loss": info.train_loss},
                step=info.epoch,
            )
            if not baseline and trial.should_prune():
                trial.set_user_attr("reason", f"pruned after epoch {info.epoch}")
                raise optuna.TrialPruned(f"pruned after epoch {info.epoch}")

        try:
            with threadpool_limits(limits=int(self.cfg.search.threads)):
                estimator.fit(
                    self.X, self.y, validation_data=(self.val.X, self.val.y), callbacks=[report]
                )
        except DivergenceError as err:
            trial.set_user_attr("reason", str(err))
            raise optuna.TrialPruned(str(err)) from None
        except optuna.TrialPruned:
            raise
        except Exception as err:
            _keep_reason(trial, err)
            raise
        finally:
            trial.set_user_attr("epochs", int(getattr(estimator, "n_iter_", 0)))
        return float(estimator.best_validation_score_)


def training_rows(y: np.ndarray, limit: int | None, seed: int, classify: bool) -> np.ndarray:
    """The rows every trial trains on, sorted: all of them, or ``limit`` drawn at random
    (the same for every trial) and, for a classifier, one more of each class the draw
    missed, so that a trial's network has an output for every class validation holds."""
    rows = np.arange(len(y))
    if not limit or limit >= len(rows):
        return rows
    rng = np.random.default_rng(seed)
    chosen = rng.choice(rows, int(limit), replace=False)
    if classify:
        missed = np.setdiff1d(y, y[chosen])
        chosen = np.concatenate([chosen, [rng.choice(np.flatnonzero(y == c)) for c in missed]])
    return np.sort(chosen.astype(np.intp))


def _keep_reason(trial: optuna.Trial, err: Exception) -> None:
    """The trial fails: keep why, for the summary and the stop after failures in a row
    (Optuna 5 does not keep a failed trial's exception)."""
    trial.set_user_attr("reason", f"{type(err).__name__}: {err}")
