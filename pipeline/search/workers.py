"""Worker processes sharing one study, and the budget lock that makes the trial count exact.

A file lock beside the storage makes "is the budget spent? then start a trial" one step,
so the study ends with exactly ``search.n_trials`` finished trials however many workers
(and searches) share it on one machine. Worker 0 runs in the stage's own process; the
others are spawned processes that die with their parent (a parent-death signal, plus a
watchdog thread for what that misses) and so never keep ``optuna.db`` open as orphans.
"""

from __future__ import annotations

import contextlib
import fcntl
import sys
import time
from concurrent.futures.process import BrokenProcessPool

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from pipeline.search import optuna_compat as compat
from pipeline.search.errors import StudyIncomplete, TrialsFailing
from pipeline.search.objective import Objective
from pipeline.search.pool import worker_pool
from pipeline.search.recovery import (
    budget_used,
    describe,
    is_alive,
    n_finished,
    recover_abandoned_trials,
    running,
)
from pipeline.search.settings import epoch_budget, validate_settings
from pipeline.search.study import create_study, lock_path, make_pruner, make_sampler

# Stop a worker after this many failed trials in a row: failures do not use up the budget,
# so a systematic error (say, a bad value every trial hits) would otherwise never end.
MAX_CONSECUTIVE_FAILURES = 5


# --- one worker ------------------------------------------------------------------------------
def run_worker(
    cfg_container: dict, parent_run_id: str | None, worker: int, deadline: float | None,
    wait_for_others: bool = False,
) -> int:  # fmt: skip
    """Run trials until the study holds ``n_trials`` or the deadline passes; returns how
    many this worker ran. With ``wait_for_others``, also wait for the trials other
    processes are running (recovering those whose worker died) until the study is
    complete, or raise :class:`StudyIncomplete` naming the ones nobody can vouch for."""
    cfg = OmegaConf.create(cfg_container)
    space = validate_settings(cfg)
    probe = create_study(cfg)
    study = create_study(
        cfg,
        sampler=make_sampler(cfg, int(cfg.seed) + 7919 * worker + len(probe.trials)),
        pruner=make_pruner(cfg, epoch_budget(cfg, space)),
    )
    objective = Objective(cfg, parent_run_id, space)
    n_trials = int(cfg.search.n_trials)
    path = lock_path(cfg, study.study_name)
    ran = failures = 0
    waiting_since: float | None = None
    finished: list[optuna.trial.FrozenTrial] = []  # this worker's trials, as they end

    def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        finished.append(trial)
        end_trial_run(objective.tracker, trial)

    with open(path, "a+") as lock_file:
        while deadline is None or time.time() < deadline:
            # Hold the lock from "is there budget left?" until Optuna has created (or
            # re-claimed) the trial and it is marked as ours; then release it.
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            locked = True

            def claim_then_run(trial: optuna.Trial) -> float:
                nonlocal locked
                objective.claim(trial)
                compat.record_heartbeat(study, trial)  # alive from now on, visibly
                fcntl.flock(lock_file, fcntl.LOCK_UN)
                locked = False
                return objective(trial)

            try:
                recover_abandoned_trials(study, cfg)
                full = budget_used(study) >= n_trials
                if not full:
                    study.optimize(claim_then_run, n_trials=1, catch=(Exception,),
                                   callbacks=[record])  # fmt: skip
                    ran += 1
            finally:
                if locked:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
            if full:
                if not wait_for_others or n_finished(study) >= n_trials:
                    break
                waiting_since = waiting_since or time.monotonic()
                check_waiting(study, cfg, time.monotonic() - waiting_since)
                time.sleep(min(1.0, float(cfg.search.heartbeat_interval)))
                continue
            waiting_since = None
            failed = bool(finished) and finished[-1].state == TrialState.FAIL
            failures = failures + 1 if failed else 0
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise TrialsFailing(
                    f"study {study.study_name}: {failures} trials in a row failed; last: "
                    f"{finished[-1].user_attrs.get('reason', 'no reason recorded')}"
                )
    return ran


def check_waiting(study: optuna.Study, cfg: DictConfig, waited: float) -> None:
    """Raise when trials of other processes have been RUNNING for longer than the grace
    period (plus two heartbeats) and nothing shows their worker is alive: a journal
    storage's trial on another host, or one whose worker left no trace."""
    grace = float(cfg.search.grace_period)
    limit = grace + 2 * float(cfg.search.heartbeat_interval)
    unknown = [t for t in running(study) if not is_alive(study, t, grace)]
    if unknown and waited > limit:
        retry_at = time.strftime("%H:%M:%S", time.localtime(time.time() + limit))
        raise StudyIncomplete(
            f"study {study.study_name}: {n_finished(study)} of {cfg.search.n_trials} trials "
            f"finished; waited {waited:.0f} s for {', '.join(map(describe, unknown))}, "
            f"which no live process here is running; if their worker died on another host, "
            f"rerun there (after {retry_at}), else rerun once they have finished"
        )


def end_trial_run(tracker, trial: optuna.trial.FrozenTrial) -> None:
    """Close the trial's nested MLflow run: status, and tags a user can filter on
    (``tags.state = 'PRUNED'``); MLflow has no "pruned" status, so KILLED plus the tags."""
    state = trial.state.name
    reason = trial.user_attrs.get("reason", "")
    tracker.end_child(
        trial.user_attrs.get("mlflow_run_id"),
        {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED"),
        {
            "state": state,
            "pruned": str(trial.state == TrialState.PRUNED).lower(),
            "reason": reason,
            "mlflow.note.content": f"{state}: {reason}" if reason else state,
            "duration_s": f"{trial.duration.total_seconds():.2f}" if trial.duration else "",
            "epochs": trial.user_attrs.get("epochs", ""),
        },
    )


# --- all workers -----------------------------------------------------------------------------
def run_workers(cfg_container: dict, parent: str | None, workers: int, deadline, pool=None) -> None:
    """Worker 0 in this process (it also waits for other processes' trials), the others
    in spawned processes (fresh interpreters: no inherited database connections) that die
    with this one: those of ``pool`` (:func:`pool.worker_pool`, started early), else a
    pool started here. A worker that dies (killed, out of memory) is reported and the
    search goes on; its running trial is recovered and retried."""
    if workers == 1:
        run_worker(cfg_container, parent, 0, deadline, wait_for_others=True)
        return
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(worker_pool(workers, None))
        others = [
            pool.submit(run_worker, cfg_container, parent, i, deadline) for i in range(1, workers)
        ]
        run_worker(cfg_container, parent, 0, deadline, wait_for_others=True)
        for future in others:
            try:
                future.result()
            except BrokenProcessPool:
                print("warning: a search worker process died; its trial will be retried",
                      file=sys.stderr)  # fmt: skip
