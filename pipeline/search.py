"""Search stage: Optuna over eta, lambda and the mini-batch size, with per-epoch pruning.

    python -m pipeline.search                          # conf/search/default.yaml
    python -m pipeline.search search.n_trials=30 search.workers=2 search.pruner.name=hyperband

Every trial builds the configured model with the sampled values, trains it on (a subset
of) the augmented training split, reports validation accuracy to Optuna after every epoch
and stops when the pruner says so; the estimator's own early stopping also applies. A
trial whose training diverges ends as pruned, its reason in the trial's user attributes.

The study lives in ``search.storage`` (SQLite by default), so running the same command
again resumes it: ``search.n_trials`` is the total of finished trials the study should
hold, counting those already there. ``search.workers=N`` runs N worker processes on this
machine; running the command on several machines against one PostgreSQL URL adds more.
A file lock beside the storage makes "is the budget spent? then start a trial" one step,
so the study ends with exactly ``n_trials`` trials however many workers share it on one
machine. With a database storage each worker sends heartbeats; a trial whose worker died
is marked failed after ``search.grace_period`` seconds and run again with the same
parameters (up to ``search.max_retry`` times).

Writes ``${paths.search}/best_params.yaml`` (what ``train`` takes when
``train.use_search=true``), ``trials.csv`` and plots; logs a parent MLflow run with one
nested run per trial.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from omegaconf import DictConfig, OmegaConf
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from threadpoolctl import threadpool_limits

from pipeline import reports
from pipeline.artifacts import ArtifactError, write_text
from pipeline.config import stage_main, to_container
from pipeline.errors import ConfigError, check_keys, require_int
from pipeline.estimators import DivergenceError
from pipeline.factory import build_estimator, dataset_meta, estimator_params, load_split
from pipeline.tracking import TrackingError, git_commit, mask_secrets, tracker_from_config

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class TrialsFailing(RuntimeError):
    """Trial after trial fails: a bug or a value every trial hits, not bad luck."""


SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("median", "successive_halving", "hyperband", "none")
MLFLOW_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}


# --- the search space ------------------------------------------------------------------------
SEARCH_KEYS = {
    "n_trials", "timeout", "workers", "storage", "study_name", "metric", "epochs",
    "max_train_samples", "threads", "space", "sampler", "pruner", "heartbeat_interval",
    "grace_period", "max_retry",
}  # fmt: skip
# Stop a worker after this many failed trials in a row: failures do not use up the budget,
# so a systematic error (say, a bad value every trial hits) would otherwise never end.
MAX_CONSECUTIVE_FAILURES = 5


def validate_settings(cfg: DictConfig) -> dict[str, dict]:
    """Check the whole ``search`` section before anything is created; returns the space."""
    s = to_container(cfg.search)
    check_keys(s, SEARCH_KEYS, "search", required=SEARCH_KEYS)
    for key, minimum in [("n_trials", 1), ("workers", 1), ("epochs", 1), ("threads", 1)]:
        require_int(s[key], f"search.{key}", minimum)
    for key, minimum in [("heartbeat_interval", 1), ("grace_period", 1), ("max_retry", 0)]:
        require_int(s[key], f"search.{key}", minimum)
    if s["max_train_samples"] is not None:
        require_int(s["max_train_samples"], "search.max_train_samples", 1)
    timeout = s["timeout"]
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or timeout <= 0):  # fmt: skip
        raise ConfigError(f"search.timeout: expected seconds > 0 or null, got {timeout!r}")
    space = validate_space(s["space"])
    known = set(estimator_params(cfg)) | {"hidden_units"}
    for name in space:
        if name not in known:
            raise ConfigError(
                f"search.space.{name}: not a parameter of {cfg.model.estimator}; expected one "
                f"of {sorted(known - {'random_state'})}"
            )
    make_sampler(cfg, 0), make_pruner(cfg)  # unknown names fail here
    return space


def validate_space(space: dict) -> dict[str, dict]:
    """Check every dimension; errors name the key (``search.space.l2.low``)."""
    if not isinstance(space, dict):
        raise ConfigError(f"search.space: expected a mapping of dimensions, got {space!r}")
    if not space:
        raise ConfigError("search.space: empty; give at least one dimension")
    checked = {}
    for name, spec in space.items():
        key = f"search.space.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{key}: expected {{low, high[, log]}} or {{choices}}; got {spec!r}")
        unknown = set(spec) - {"low", "high", "log", "choices"}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}: unknown key")
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                raise ConfigError(f"{key}.choices: must be a non-empty list")
            checked[name] = {"choices": list(spec["choices"])}
            continue
        for bound in ("low", "high"):
            if not isinstance(spec.get(bound), int | float) or isinstance(spec[bound], bool):
                raise ConfigError(f"{key}.{bound}: must be a number; got {spec.get(bound)!r}")
        low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
        if low > high:
            raise ConfigError(f"{key}: low={low} is greater than high={high}")
        if log and low <= 0:
            raise ConfigError(f"{key}.low: must be > 0 on a log scale; got {low}")
        checked[name] = {"low": low, "high": high, "log": log}
    return checked


def suggest(trial: optuna.Trial, space: dict[str, dict]) -> dict[str, Any]:
    """Sample every dimension: ints where both bounds are ints, floats otherwise."""
    values = {}
    for name, spec in space.items():
        if "choices" in spec:
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec["log"])
        else:
            values[name] = trial.suggest_float(
                name, float(spec["low"]), float(spec["high"]), log=spec["log"]
            )
    return values


def estimator_overrides(values: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """Searched values as estimator parameters (``hidden_units`` sizes every hidden layer)."""
    overrides = dict(values)
    if "hidden_units" in overrides:
        units = int(overrides.pop("hidden_units"))
        overrides["hidden_layer_sizes"] = [units] * len(cfg.model.hidden_layer_sizes)
    return overrides


# --- Optuna objects from the config ----------------------------------------------------------
def make_sampler(cfg: DictConfig, seed: int) -> optuna.samplers.BaseSampler:
    name, startup = cfg.search.sampler.name, int(cfg.search.sampler.n_startup_trials)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    if name == "gp":
        try:
            import torch  # noqa: F401  (GPSampler needs it)
        except ImportError:
            raise ConfigError("search.sampler.name=gp needs PyTorch: pip install torch") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    raise ConfigError(f"search.sampler.name: {name!r} is not one of {list(SAMPLERS)}")


def make_pruner(cfg: DictConfig) -> optuna.pruners.BasePruner:
    p = cfg.search.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(p.n_startup_trials), n_warmup_steps=int(p.n_warmup_steps)
        )
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=int(cfg.search.epochs))
    if p.name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"search.pruner.name: {p.name!r} is not one of {list(PRUNERS)}")


def make_storage(cfg: DictConfig) -> optuna.storages.BaseStorage:
    """SQLite / any SQLAlchemy URL (with heartbeats), or ``journal:///file`` (no heartbeats)."""
    url = str(cfg.search.storage)
    if url.startswith("journal://"):
        path = Path(url.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs = {}
    if url.startswith("sqlite:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}  # wait for the lock, don't fail
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _rdb_storage(cfg, url, engine_kwargs)
    except Exception as err:  # SQLAlchemy/driver errors: bad URL, server down, auth
        raise ConfigError(f"search.storage={mask_secrets(url)!r}: cannot open ({err})") from None


def _rdb_storage(cfg: DictConfig, url: str, engine_kwargs: dict) -> RDBStorage:
    return RDBStorage(
        url,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=int(cfg.search.heartbeat_interval),
        grace_period=int(cfg.search.grace_period),
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
            max_retry=int(cfg.search.max_retry)
        ),
    )


def study_name(cfg: DictConfig) -> str:
    """``search.study_name``, or one derived from what makes trials comparable."""
    if cfg.search.study_name:
        return str(cfg.search.study_name)
    relevant = {
        key: to_container(cfg[key]) for key in ("data", "augment", "model", "train", "search")
    }
    for key in ("n_trials", "timeout", "workers", "storage", "study_name", "threads"):
        relevant["search"].pop(key, None)  # how long or where, not what is searched
    # Train settings that the trials replace (the searched ones, the epoch budget) or that
    # do not change what a trial learns.
    replaced = {*cfg.search.space, "epochs", "use_search", "threads", "track_gradient_norms"}
    relevant["train"] = {k: v for k, v in relevant["train"].items() if k not in replaced}
    if "hidden_units" in cfg.search.space:
        relevant["model"].pop("hidden_layer_sizes", None)
    relevant["seed"] = cfg.seed
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.model.name}-{cfg.data.name}-{digest}"


def create_study(cfg: DictConfig) -> optuna.Study:
    """Create the study, or load it if it exists (also when another process just made it)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(cfg)
    for attempt in range(4):
        try:
            # Creating the storage's tables or the study races with other processes doing
            # the same at the same instant (SQLite and PostgreSQL both): try again.
            return optuna.create_study(
                storage=make_storage(cfg), study_name=name, direction="maximize",
                load_if_exists=True,
            )  # fmt: skip
        except Exception:
            if attempt == 3:
                raise
            time.sleep(0.25 * 2**attempt)
    raise AssertionError("unreachable")


def budget_lock_path(cfg: DictConfig, name: str) -> Path:
    url = str(cfg.search.storage)
    for prefix in ("sqlite:///", "journal://"):
        if url.startswith(prefix):
            storage_file = Path(url.removeprefix(prefix))
            return storage_file.with_name(f"{storage_file.name}.{name}.lock")
    digest = hashlib.sha256(f"{url}|{name}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"nndl-search-{digest}.lock"


# --- one worker --------------------------------------------------------------------------------
class Objective:
    """Train one trial's network; report validation accuracy per epoch for pruning."""

    def __init__(self, cfg: DictConfig, parent_run_id: str | None, space: dict) -> None:
        self.cfg = cfg
        self.space = space
        self.parent_run_id = parent_run_id
        self.tracker = tracker_from_config(cfg)
        train = load_split(Path(cfg.paths.augmented) / "train.npz")
        val = load_split(Path(cfg.paths.prepared) / "val.npz")
        limit = cfg.search.max_train_samples
        rows = np.arange(len(train.y))
        if limit and limit < len(rows):
            rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, int(limit), replace=False))
        self.X, self.y = train.X[rows], train.y[rows]
        self.val = val
        self.image_shape = train.image_shape

    def __call__(self, trial: optuna.Trial) -> float:
        values = suggest(trial, self.space)
        overrides = {"epochs": int(self.cfg.search.epochs), **estimator_overrides(values, self.cfg)}
        estimator = build_estimator(self.cfg, self.image_shape, overrides)
        run_id = None
        if self.parent_run_id:
            run_id = self.tracker.start_child(
                self.parent_run_id, f"trial-{trial.number}", {"trial": trial.number, **values}
            )
            trial.set_user_attr("mlflow_run_id", run_id)

        def report(info) -> None:
            trial.report(info.validation_accuracy, info.epoch)
            self.tracker.log_child_metrics(
                run_id,
                {"val_accuracy": info.validation_accuracy, "train_loss": info.train_loss},
                step=info.epoch,
            )
            if trial.should_prune():
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
        except Exception as err:  # the trial fails; keep why (Optuna 5 does not)
            trial.set_user_attr("reason", f"{type(err).__name__}: {err}")
            raise
        finally:
            trial.set_user_attr("epochs", int(getattr(estimator, "n_iter_", 0)))
        return float(estimator.best_validation_score_)


def _end_trial_run(tracker, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    tracker.end_child(
        trial.user_attrs.get("mlflow_run_id"),
        MLFLOW_STATUS.get(trial.state, "FAILED"),
        {
            "state": trial.state.name,
            "reason": trial.user_attrs.get("reason", ""),
            "duration_s": f"{trial.duration.total_seconds():.2f}" if trial.duration else "",
            "epochs": trial.user_attrs.get("epochs", ""),
        },
    )


def recover_abandoned_trials(study: optuna.Study, grace_period: float) -> None:
    """Fail and retry the trials of workers that died, including the cases Optuna's own
    heartbeat check (:func:`optuna.storages.fail_stale_trials`, called first) misses:

    - a worker killed after creating its trial but before its first heartbeat: the trial
      is RUNNING with no heartbeat row, which Optuna never considers stale;
    - a worker killed after failing a stale trial but before adding its retry: the trial
      is FAIL with no retry. (Failures of the objective itself carry a ``reason`` user
      attribute and are not retried.)
    """
    storage = study._storage
    if not isinstance(_backend(study), RDBStorage):
        return
    with warnings.catch_warnings():  # "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    retry = storage.get_heartbeat_stale_trial_callback()
    started_before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=grace_period)
    for trial_id in _running_without_heartbeat(_backend(study), study._study_id, started_before):
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL) and retry:
                retry(study, storage.get_trial(trial_id))
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for trial in trials:
        stale = trial.state == TrialState.FAIL and "reason" not in trial.user_attrs
        if stale and trial.number not in retried and retry:
            retry(study, trial)


def _backend(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage under Optuna's cache wrapper."""
    return getattr(study._storage, "_backend", study._storage)


def _running_without_heartbeat(storage: RDBStorage, study_id: int, started_before) -> list[int]:
    """RUNNING trials that never sent a heartbeat and started before ``started_before``.
    (Optuna has no public query for this; its RDB models are the place to ask.)"""
    from optuna.storages._rdb import models

    session = storage.scoped_session()
    try:
        rows = (
            session.query(models.TrialModel.trial_id)
            .outerjoin(models.TrialHeartbeatModel)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .filter(models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
            .filter(models.TrialModel._datetime_start_utc < started_before)
            .all()
        )
    finally:
        session.close()
    return [row[0] for row in rows]


def budget_used(study: optuna.Study) -> int:
    """Trials that count against ``n_trials``: finished or still running."""
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))


def run_worker(cfg_container: dict, parent_run_id: str | None, worker: int, deadline) -> int:
    """Run trials until the study holds ``n_trials`` or the deadline passes; returns how
    many this worker ran. Runs in a worker process (or in-process for one worker)."""
    cfg = OmegaConf.create(cfg_container)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = validate_settings(cfg)
    study = create_study(cfg)
    study.sampler = make_sampler(cfg, int(cfg.seed) + 7919 * worker + len(study.trials))
    study.pruner = make_pruner(cfg)
    objective = Objective(cfg, parent_run_id, space)
    n_trials = int(cfg.search.n_trials)
    lock_path = budget_lock_path(cfg, study.study_name)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    ran = failures = 0
    finished: list[optuna.trial.FrozenTrial] = []  # this worker's trials, as they end

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished.append(trial)
        _end_trial_run(objective.tracker, study, trial)

    with open(lock_path, "a+") as lock_file:
        while deadline is None or time.time() < deadline:
            # Hold the lock from "is there budget left?" until Optuna has created (or
            # re-claimed) the trial; the objective releases it as its first step.
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            locked = True

            def unlock_then_run(trial: optuna.Trial) -> float:
                nonlocal locked
                if isinstance(_backend(study), RDBStorage):  # alive from now on, visibly
                    study._storage.record_heartbeat(trial._trial_id)
                fcntl.flock(lock_file, fcntl.LOCK_UN)
                locked = False
                return objective(trial)

            try:
                recover_abandoned_trials(study, float(cfg.search.grace_period))
                if budget_used(study) >= n_trials:
                    break
                study.optimize(
                    unlock_then_run,
                    n_trials=1,
                    catch=(Exception,),
                    callbacks=[record],
                )
                ran += 1
            finally:
                if locked:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
            failed = bool(finished) and finished[-1].state == TrialState.FAIL
            failures = failures + 1 if failed else 0
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise TrialsFailing(
                    f"study {study.study_name}: {failures} trials in a row failed; last: "
                    f"{finished[-1].user_attrs.get('reason', 'no reason recorded')}"
                )
    return ran


def run_workers(cfg_container: dict, parent: str | None, workers: int, deadline) -> None:
    """Worker 0 in this process, the others in spawned processes (fresh interpreters: no
    inherited database connections). A worker that dies (killed, out of memory) is reported
    and the search goes on; its running trial is retried later (heartbeats)."""
    if workers == 1:
        run_worker(cfg_container, parent, 0, deadline)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers - 1, mp_context=context) as pool:
        others = [
            pool.submit(run_worker, cfg_container, parent, i, deadline) for i in range(1, workers)
        ]
        run_worker(cfg_container, parent, 0, deadline)
        for future in others:
            try:
                future.result()
            except BrokenProcessPool:
                print("warning: a search worker process died; its trial will be retried",
                      file=sys.stderr)  # fmt: skip


# --- the stage ---------------------------------------------------------------------------------
def run(cfg: DictConfig) -> dict:
    """Create the study, run the workers, write best params, trials and plots."""
    validate_settings(cfg)
    meta = dataset_meta(cfg)
    study = create_study(cfg)  # once, before any worker starts
    tracker = tracker_from_config(cfg)
    tracker.start(
        run_name=f"search-{study.study_name}",
        tags={"git_commit": git_commit(), "dvc_stage": "search", "dataset": meta["dataset"]},
    )
    tracker.log_config(cfg)
    parent = tracker.run_id if tracker.active else None
    deadline = time.time() + float(cfg.search.timeout) if cfg.search.timeout else None

    cfg_container = to_container(cfg)
    started = time.perf_counter()
    run_workers(cfg_container, parent, int(cfg.search.workers), deadline)
    seconds = time.perf_counter() - started

    study = create_study(cfg)  # fresh view of everything the workers stored
    summary = write_outputs(cfg, study)
    summary["seconds"] = round(seconds, 1)
    tracker.log_metrics(
        {k: v for k, v in summary.items() if isinstance(v, int | float) and k != "best_trial"}
    )
    with contextlib.suppress(KeyError):
        tracker.log_config(OmegaConf.create({"best": summary["best_params"]}))
    tracker.log_artifact(cfg.paths.search, "search")
    tracker.end()
    print(
        f"study {study.study_name}: {summary['n_complete']} complete, {summary['n_pruned']} "
        f"pruned, {summary['n_failed']} failed; best {cfg.search.metric} "
        f"{summary['best_value']:.4f} (trial {summary['best_trial']}) -> {cfg.paths.best_params}"
    )
    return summary


def write_outputs(cfg: DictConfig, study: optuna.Study) -> dict:
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        reasons = {t.user_attrs.get("reason") for t in trials}
        raise ArtifactError(
            f"study {study.study_name}: no trial completed (reasons: {sorted(map(str, reasons))})"
        )
    best = study.best_trial
    out = Path(cfg.paths.search)
    header = (
        f"# Best trial {best.number} of study {study.study_name}: "
        f"{cfg.search.metric} {best.value:.4f}.\n"
        "# train takes `params` when train.use_search=true.\n"
    )
    best_params = estimator_overrides(best.params, cfg)
    document = {"study": study.study_name, "trial": best.number, "value": best.value}
    model_keys = {"hidden_layer_sizes"}
    document["config"] = {
        "train": {k: v for k, v in best_params.items() if k not in model_keys},
        **({"model": {k: best_params[k] for k in model_keys & set(best_params)}}
           if model_keys & set(best_params) else {}),
    }  # fmt: skip
    write_text(cfg.paths.best_params, header + yaml.safe_dump(document, sort_keys=False))
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    frame["duration_s"] = [t.duration.total_seconds() if t.duration else None for t in trials]
    write_text(out / "trials.csv", frame.to_csv(index=False))
    plot_study(study, out / "plots")
    count = {state: sum(t.state == state for t in trials) for state in TrialState}
    return {
        "best_value": float(best.value),
        "best_trial": best.number,
        "best_params": best_params,
        "n_complete": count[TrialState.COMPLETE],
        "n_pruned": count[TrialState.PRUNED],
        "n_failed": count[TrialState.FAIL],
        "epochs_trained": int(sum(t.user_attrs.get("epochs", 0) for t in trials)),
    }


def plot_study(study: optuna.Study, directory: Path) -> None:
    """Optimisation history, importances, eta x lambda contour, slices, intermediate values."""
    from optuna.visualization import matplotlib as ovm

    names = sorted({name for t in study.trials for name in t.params})
    contour = [n for n in ("learning_rate", "l2") if n in names]
    plots = {
        "optimization_history": lambda: ovm.plot_optimization_history(study),
        "param_importances": lambda: ovm.plot_param_importances(study),
        "contour": lambda: ovm.plot_contour(study, params=contour if len(contour) == 2 else None),
        "slice": lambda: ovm.plot_slice(study),
        "intermediate_values": lambda: ovm.plot_intermediate_values(study),
    }
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)  # batch-size axis chatter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        for name, draw in plots.items():
            try:
                axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances need two completed trials with varied params
            figure = np.ravel(axes)[0].figure if isinstance(axes, np.ndarray) else axes.figure
            reports.save_figure(figure, directory / f"{name}.png")


def main() -> None:
    stage_main(run, (ArtifactError, ConfigError, TrackingError, TrialsFailing, OSError))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore::optuna.exceptions.ExperimentalWarning")
    main()
