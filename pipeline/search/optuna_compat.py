"""Every use of Optuna's private API in the project, in one place.

Optuna has no public way to: reach the storage under a study (``study._storage``, and the
storage under its cache wrapper, ``_backend``), name a trial's storage id
(``trial._trial_id``), send a heartbeat now, or list RUNNING trials that never sent one
(the ``_rdb`` models). These functions wrap exactly those accesses. They are written
against the Optuna majors in :data:`KNOWN_MAJORS`; :func:`check_version` refuses any other
(the search stage calls it before it creates anything) and ``tests/search/
test_optuna_compat.py`` exercises every function on a real SQLite study, so an Optuna
upgrade that moves an internal fails there, loudly, instead of in a user's search.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from datetime import datetime

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from pipeline.search.errors import OptunaVersionError

KNOWN_MAJORS = (5,)


def check_version(version: str = optuna.__version__) -> None:
    """Raise unless ``version``'s major is one of :data:`KNOWN_MAJORS`."""
    major = version.split(".")[0]
    if not (major.isdigit() and int(major) in KNOWN_MAJORS):
        raise OptunaVersionError(
            f"optuna {version}: pipeline/search/optuna_compat.py knows Optuna "
            f"{', '.join(f'{m}.x' for m in KNOWN_MAJORS)} only; install optuna "
            f"{KNOWN_MAJORS[-1]}.x, or check every function there against this version (run "
            "tests/search/test_optuna_compat.py) and add its major to KNOWN_MAJORS"
        )


@contextlib.contextmanager
def ignore_experimental_warnings() -> Iterator[None]:
    """Ignore Optuna's ExperimentalWarning (heartbeats, retries and the matplotlib plots
    are all marked experimental), by category."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study writes through (Optuna's cache wrapper, where there is one)."""
    return study._storage


def backend_of(study: optuna.Study) -> BaseStorage:
    """The storage under Optuna's cache wrapper: RDBStorage, JournalStorage, ..."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


def has_heartbeats(study: optuna.Study) -> bool:
    backend = backend_of(study)
    return isinstance(backend, RDBStorage) and backend.get_heartbeat_interval() is not None


def trial_id(trial: optuna.Trial) -> int:
    """The storage's id of a live trial (not its number)."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    return study._study_id


def record_heartbeat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Send the trial's first heartbeat now (Optuna sends it only once the objective runs)."""
    if has_heartbeats(study):
        storage_of(study).record_heartbeat(trial_id(trial))


def fail_trial(study: optuna.Study, number: int) -> bool:
    """Mark RUNNING trial ``number`` FAIL; False when it has finished meanwhile."""
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    try:
        return storage_of(study).set_trial_state_values(frozen._trial_id, state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def fail_heartbeat_stale_trials(study: optuna.Study) -> None:
    """Optuna's own check (public, but "experimental": its warning silenced here)."""
    with ignore_experimental_warnings():
        optuna.storages.fail_stale_trials(study)


def running_without_heartbeat(study: optuna.Study, started_before: datetime) -> list[int]:
    """Numbers of the RUNNING trials of ``study`` that never sent a heartbeat and started
    before ``started_before`` (naive UTC). Optuna has no public query for this; its RDB
    models are the place to ask. Empty for storages without heartbeats."""
    if not has_heartbeats(study):
        return []
    from optuna.storages._rdb import models

    backend = backend_of(study)
    session = backend.scoped_session()
    try:
        rows = (
            session.query(models.TrialModel.number)
            .outerjoin(models.TrialHeartbeatModel)
            .filter(models.TrialModel.study_id == study_id(study))
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .filter(models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
            .filter(models.TrialModel._datetime_start_utc < started_before)
            .all()
        )
    finally:
        session.close()
    return [row[0] for row in rows]


def fresh_heartbeat(study: optuna.Study, number: int, grace_period: float) -> bool:
    """True when trial ``number`` sent a heartbeat less than ``grace_period`` seconds ago
    (by the database's clock, as Optuna's own staleness check)."""
    if not has_heartbeats(study):
        return False
    import sqlalchemy
    from optuna.storages._rdb import models

    session = backend_of(study).scoped_session()
    try:
        now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
        row = (
            session.query(models.TrialHeartbeatModel.heartbeat)
            .join(models.TrialModel)
            .filter(models.TrialModel.study_id == study_id(study))
            .filter(models.TrialModel.number == number)
            .one_or_none()
        )
    finally:
        session.close()
    return row is not None and (now - row[0]).total_seconds() < grace_period
