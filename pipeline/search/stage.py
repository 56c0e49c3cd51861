"""The search stage: check, create the study (baseline first), run the workers, write.

    python -m pipeline.search                          # conf/search/default.yaml
    python -m pipeline.search search.n_trials=30 search.workers=2 search.pruner.name=median

The study lives in ``search.storage`` (SQLite by default), so running the same command
again resumes it: ``search.n_trials`` is the total of finished trials the study should
hold, counting those already there; a resumed study logs into its MLflow parent run.
Trial 0 of a new study is the baseline: the configured (the book's) values of every
searched dimension, never pruned, so the best trial is at least as good on validation.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from pipeline.config import stage_main, to_container
from pipeline.errors import ConfigError
from pipeline.io import ArtifactError, check_writable, file_lock
from pipeline.search.errors import OptunaVersionError, StudyIncomplete, TrialsFailing
from pipeline.search.pool import worker_pool
from pipeline.tracking import TrackingError, git_commit, mask_secrets, tracker_from_config

if TYPE_CHECKING:
    import optuna

# Optuna, scikit-learn and matplotlib load when the stage runs, not on import: `--help`
# answers at once (tests/test_startup.py).


def enqueue_baseline(study: optuna.Study, cfg: DictConfig, space: dict) -> None:
    """Trial 0 of a new study: the configured values (under the budget lock, so that of
    several searches starting together exactly one enqueues it)."""
    from pipeline.search.objective import BASELINE_ATTR
    from pipeline.search.space import baseline_values
    from pipeline.search.study import lock_path

    with file_lock(lock_path(cfg, study.study_name)):
        if not study.get_trials(deepcopy=False):
            study.enqueue_trial(baseline_values(cfg, space), user_attrs={BASELINE_ATTR: True})


def parent_run_key(cfg: DictConfig) -> str:
    """The study user attribute holding its MLflow parent run for this store + experiment."""
    where = f"{mask_secrets(str(cfg.tracking.uri))}|{cfg.tracking.experiment}"
    return "mlflow_parent_run:" + hashlib.sha256(where.encode()).hexdigest()[:12]


def start_parent_run(study: optuna.Study, cfg: DictConfig, dataset: str):
    """Start the study's parent run, or resume the one an earlier run of the study opened
    (one study, one parent run; the lock keeps racing searches from opening two)."""
    from pipeline.search.study import lock_path

    tracker = tracker_from_config(cfg)
    tags = {"git_commit": git_commit(), "dvc_stage": "search", "dataset": dataset,
            "study": study.study_name}  # fmt: skip
    key = parent_run_key(cfg)
    with file_lock(lock_path(cfg, study.study_name)):
        existing = study.user_attrs.get(key)
        tracker.start(run_name=f"search-{study.study_name}", run_id=existing, tags=tags)
        if tracker.active and existing is None:
            study.set_user_attr(key, tracker.run_id)
    return tracker


def run(cfg: DictConfig) -> dict:
    """Create the study, run the workers, write best params, trials, summary and plots."""
    # The worker processes start first: their imports overlap this process's set-up.
    sql_storage = not str(cfg.search.storage).startswith("journal:")
    with worker_pool(int(cfg.search.workers), tracking_uri(cfg), sql_storage) as pool:
        return _run(cfg, pool)


def tracking_uri(cfg: DictConfig) -> str | None:
    return str(cfg.tracking.uri) if cfg.tracking.enabled else None


def _run(cfg: DictConfig, pool) -> dict:
    from pipeline.factory import build_estimator, dataset_meta, training_splits
    from pipeline.search import optuna_compat as compat
    from pipeline.search.settings import validate_settings
    from pipeline.search.study import create_study

    compat.check_version()
    space = validate_settings(cfg)
    check_writable(cfg.paths.best_params, Path(cfg.paths.search) / "plots" / "slice.png")
    meta = dataset_meta(cfg)
    train, _ = training_splits(cfg)  # checked before the study is stored (workers load them)
    build_estimator(cfg, train.image_shape)  # the configured network fits these images
    del train
    study = create_study(cfg)  # once, before any worker starts
    enqueue_baseline(study, cfg, space)
    tracker = start_parent_run(study, cfg, meta["dataset"])
    tracker.close_stale_runs()  # parent runs of searches that were killed (SIGKILL)
    try:
        summary = search(cfg, tracker, pool)
    except KeyboardInterrupt:
        tracker.end(status="KILLED")
        raise
    except BaseException:
        tracker.end(status="FAILED")
        raise
    tracker.end()
    return summary


def search(cfg: DictConfig, tracker, pool=None) -> dict:
    from pipeline.factory import load_split
    from pipeline.search.outputs import write_outputs
    from pipeline.search.progress import Progress
    from pipeline.search.study import create_study
    from pipeline.search.workers import run_workers

    tracker.log_config(cfg)
    parent = tracker.run_id if tracker.active else None
    timeout = cfg.search.timeout
    deadline = time.time() + float(timeout) if timeout else None
    n_trials = int(cfg.search.n_trials)
    started = time.perf_counter()
    with Progress(lambda: create_study(cfg), n_trials, deadline):
        run_workers(to_container(cfg), parent, int(cfg.search.workers), deadline, pool)
    seconds = time.perf_counter() - started

    study = create_study(cfg)  # fresh view of everything the workers stored
    incomplete(study, n_trials)
    n_val = len(load_split(Path(cfg.paths.prepared) / "val.npz").y)  # what trials scored on
    summary = write_outputs(cfg, study, n_val)
    summary["seconds"] = round(seconds, 1)
    tracker.log_metrics({k: v for k, v in summary.items()
                         if isinstance(v, int | float) and not k.endswith("_trial")})  # fmt: skip
    tracker.log_metrics({f"best.{k}": v for k, v in summary["best_params"].items()
                         if isinstance(v, int | float) and not isinstance(v, bool)})  # fmt: skip
    tracker.log_artifact(cfg.paths.search, "search")
    baseline = summary["baseline_value"]
    print(
        f"study {study.study_name}: {summary['n_complete']} complete, {summary['n_pruned']} "
        f"pruned, {summary['n_failed']} failed; best {cfg.search.metric} "
        f"{summary['best_value']:.4f} (trial {summary['best_trial']})"
        + (f" vs baseline {baseline:.4f} (trial {summary['baseline_trial']})" if baseline
           is not None else "")
        + f"; train uses {summary['chosen']} -> {cfg.paths.best_params}"
    )  # fmt: skip
    return summary


def incomplete(study: optuna.Study, n_trials: int) -> None:
    """Say why a study holds fewer than ``n_trials`` finished trials (search.timeout)."""
    from pipeline.search.recovery import n_finished, running

    finished = n_finished(study)
    if finished < n_trials:
        others = running(study)
        print(
            f"warning: search.timeout reached: study {study.study_name} holds {finished} of "
            f"{n_trials} finished trials"
            + (f", {len(others)} still running elsewhere" if others else "")
            + "; run the same command again to continue"
        )


ERRORS = (ArtifactError, ConfigError, TrackingError, TrialsFailing, StudyIncomplete,
          OptunaVersionError, OSError)  # fmt: skip


def main() -> None:
    stage_main(run, ERRORS)
