"""Trials whose worker died: find them, fail them, run their parameters again.

Three ways to know a RUNNING trial's worker is gone:

- heartbeats (database storages): Optuna fails a trial whose last heartbeat is older than
  ``search.grace_period`` (:func:`optuna.storages.fail_stale_trials`);
- no heartbeat at all, started more than ``grace_period`` ago: killed between creating the
  trial and its first heartbeat, which Optuna never considers stale;
- the worker's identity (host, pid, process start time; a user attribute every trial gets
  as its first step): on this host, a trial whose process is gone is failed at once. This
  is how a journal storage, which has no heartbeats, recovers at all; and a file storage
  (SQLite, journal) fails at once a RUNNING trial with no identity, since every process
  creates and marks its trial under the budget lock the recovering process holds.

A failed trial is retried with the same parameters (``failed_trial``/``retry_history``
system attributes, up to ``search.max_retry`` times), also when its worker was killed after
failing it but before adding its retry. Failures of the objective itself carry a
``reason`` user attribute and are not retried.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

import optuna
from omegaconf import DictConfig
from optuna.trial import FrozenTrial, TrialState

from pipeline.search import optuna_compat as compat
from pipeline.search.study import retry_callback, storage_file

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
WORKER_ATTR = "worker"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def worker_identity() -> dict:
    """What identifies this process: host, pid, start time (tells a reused pid apart)."""
    stat = _proc_stat(os.getpid())
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": stat and stat[1]}


def worker_state(identity: dict | None) -> str:
    """``alive``, ``gone`` (on this host, no such process) or ``unknown`` (another host,
    or no identity recorded)."""
    if not isinstance(identity, dict) or identity.get("host") != socket.gethostname():
        return "unknown"
    pid = identity.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return "unknown"
    stat = _proc_stat(pid)
    if stat is None:
        if os.path.isdir("/proc/self"):
            return "gone"
        try:  # no /proc: ask the kernel
            os.kill(pid, 0)
        except ProcessLookupError:
            return "gone"
        except PermissionError:
            pass
        return "alive"
    state, ticks = stat
    if state in ("Z", "X"):
        return "gone"
    return "alive" if identity.get("start") in (None, ticks) else "gone"


def recover_abandoned_trials(study: optuna.Study, cfg: DictConfig) -> list[int]:
    """Fail the trials of dead workers and queue their retries; returns the failed numbers.
    Call it while holding the budget lock (no trial of this host is then half-created)."""
    compat.fail_heartbeat_stale_trials(study)
    grace = float(cfg.search.grace_period)
    started_before = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=grace)
    abandoned = set(compat.running_without_heartbeat(study, started_before))
    # A file storage is shared by the processes of one host, and all of them create a
    # trial and mark it as theirs under the budget lock we hold: a trial without a mark
    # lost its worker in between.
    one_host = storage_file(cfg) is not None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        state = worker_state(trial.user_attrs.get(WORKER_ATTR))
        unmarked = WORKER_ATTR not in trial.user_attrs
        if state == "gone" or (unmarked and one_host):
            abandoned.add(trial.number)
    failed = [n for n in sorted(abandoned) if compat.fail_trial(study, n)]
    retry_unretried(study, cfg)
    return failed


def retry_unretried(study: optuna.Study, cfg: DictConfig) -> None:
    """Queue a retry for every crashed trial (FAIL, no ``reason``) that has none yet."""
    retry = retry_callback(cfg)
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    for trial in trials:
        crashed = trial.state == TrialState.FAIL and "reason" not in trial.user_attrs
        if crashed and trial.number not in retried:
            with compat.ignore_experimental_warnings():
                retry(study, trial)


def budget_used(study: optuna.Study) -> int:
    """Trials that count against ``n_trials``: finished or still running."""
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))


def n_finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def running(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def is_alive(study: optuna.Study, trial: FrozenTrial, grace_period: float) -> bool:
    """Is someone demonstrably still working on this RUNNING trial?"""
    state = worker_state(trial.user_attrs.get(WORKER_ATTR))
    if state == "alive":
        return True
    return state == "unknown" and compat.fresh_heartbeat(study, trial.number, grace_period)


def describe(trial: FrozenTrial) -> str:
    worker = trial.user_attrs.get(WORKER_ATTR) or {}
    where = f"host {worker.get('host', '?')} pid {worker.get('pid', '?')}"
    return f"trial {trial.number} ({where}, started {trial.datetime_start:%H:%M:%S})"
