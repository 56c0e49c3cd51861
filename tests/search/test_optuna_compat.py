"""Every function of pipeline/search/optuna_compat.py on a real SQLite study: an Optuna
release that moves one of the internals they use fails here, loudly."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from pipeline.search import optuna_compat as compat


def test_the_installed_optuna_is_a_known_major():
    compat.check_version()  # raises on a major optuna_compat was not written for


@pytest.mark.parametrize("version", ["4.5.0", "6.0.0", "10.1", "dev"])
def test_an_unknown_optuna_version_is_refused_loudly(version):
    with pytest.raises(compat.OptunaVersionError, match="optuna_compat.py knows Optuna 5.x"):
        compat.check_version(version)


@pytest.fixture
def sqlite_study(tmp_path):
    with compat.ignore_experimental_warnings():
        storage = RDBStorage(
            f"sqlite:///{tmp_path / 'compat.db'}", heartbeat_interval=1, grace_period=1
        )
    return optuna.create_study(storage=storage, study_name="compat")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_storage_access_and_heartbeats(sqlite_study):
    study = sqlite_study
    assert isinstance(compat.backend_of(study), RDBStorage)
    assert compat.storage_of(study) is not None and compat.has_heartbeats(study)
    assert isinstance(compat.study_id(study), int)
    silent, beating = study.ask(), study.ask()
    assert isinstance(compat.trial_id(silent), int)
    compat.record_heartbeat(study, beating)
    assert compat.fresh_heartbeat(study, beating.number, grace_period=60)
    assert not compat.fresh_heartbeat(study, silent.number, grace_period=60)
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=5)
    assert compat.running_without_heartbeat(study, later) == [silent.number]
    earlier = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=60)
    assert compat.running_without_heartbeat(study, earlier) == []


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_fail_trial_and_optunas_stale_check(sqlite_study):
    study = sqlite_study
    first, second = study.ask(), study.ask()
    assert compat.fail_trial(study, first.number)
    assert not compat.fail_trial(study, first.number)  # already finished
    compat.record_heartbeat(study, second)
    time.sleep(2.2)  # past the grace period of 1 s
    compat.fail_heartbeat_stale_trials(study)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL]


def test_journal_storage_has_no_heartbeats(tmp_path):
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    assert not compat.has_heartbeats(study)
    compat.record_heartbeat(study, trial)  # a no-op, not an error
    assert compat.running_without_heartbeat(study, datetime.now(UTC).replace(tzinfo=None)) == []
    assert compat.fail_trial(study, trial.number)
    assert study.trials[0].state == TrialState.FAIL
