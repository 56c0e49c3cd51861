"""Search workers killed with SIGKILL at random moments, on one study, again and again.

Each test starts ``python -m pipeline.search`` as its own process group, kills the whole
group (the worker processes of ``search.workers=3`` included) after a delay drawn from a
seeded RNG, watches the study in between, waits past the heartbeat grace period and starts
it again; ten kills, then one run that is left to finish. The kills land in three kinds of
moment:

- ``startup``: a random delay after the start: while the process imports, opens (or
  creates) the storage, fails the stale trials of the previous kill and adds their retries;
- ``first_trial``: as soon as a trial turns RUNNING (just after ``study.ask()`` wrote it),
  plus a few milliseconds: storage writes of the trial's start;
- ``mid_trial``: a random time into a trial.

What must hold at the end: every trial ever seen COMPLETE is still COMPLETE with the same
value; trial numbers are unique and consecutive; nothing is left RUNNING or WAITING; every
trial that was running when its worker died ended as FAIL and was retried with the same
parameters (``failed_trial``/``retry_history`` system attributes); the study holds exactly
``n_trials`` finished trials; its best is the best of the stored COMPLETE trials and is what
``best_params.yaml`` says.

Two windows of Optuna's own heartbeat bookkeeping would lose a trial when a kill lands in
them (killed after creating a trial but before its first heartbeat; killed after failing a
stale trial but before adding its retry); ``search.recover_abandoned_trials`` closes both,
and each has a deterministic test below (a kill forced at that exact point).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from pipeline import augment, prepare
from pipeline.config import compose_config
from tests.environ import child_environment

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10
EPOCHS = 20  # a few tenths of a second per trial on digits
HEARTBEAT, GRACE = 1, 2
DIGITS = ["data=digits", "augment=none", "model=mlp"]


ENV = child_environment()


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    """Prepared digits (no augmentation), shared by the tests; each has its own study."""
    root = tmp_path_factory.mktemp("search_faults")
    cfg = compose_config([*paths(root), *DIGITS, "tracking=off"])
    prepare.run(cfg)
    augment.run(cfg)
    return root


def paths(root: Path) -> list[str]:
    return [
        f"paths.data={root / 'data'}",
        f"paths.models={root / 'models'}",
        f"paths.reports={root / 'reports'}",
    ]


def search_overrides(root: Path, storage: str, study: str, n_trials: int, workers: int):
    return [
        *paths(root),
        f"paths.search={root / 'reports' / study}",
        *DIGITS,
        "tracking=off",
        f"search.storage={storage}",
        f"search.study_name={study}",
        f"search.n_trials={n_trials}",
        f"search.workers={workers}",
        f"search.epochs={EPOCHS}",
        f"search.heartbeat_interval={HEARTBEAT}",
        f"search.grace_period={GRACE}",
        f"search.max_retry={KILLS * workers}",  # never runs out here: every failure retried
        "search.pruner.name=none",
        "search.space.batch_size.choices=[10]",
        "train.early_stopping=false",
    ]


def search_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.search", *overrides]


def sqlite_url(root: Path, name: str) -> str:
    return f"sqlite:///{root / f'{name}.db'}"


# --- watching the study from outside ---------------------------------------------------------
class Watcher:
    """Reads the study's trials from the storage; remembers every COMPLETE value seen."""

    def __init__(self, url: str, study: str) -> None:
        self.url, self.study = url, study
        self.storage: RDBStorage | None = None
        self.complete: dict[int, float] = {}
        self.observations = 0

    def _open(self) -> RDBStorage | None:
        if self.storage is None:
            if self.url.startswith("sqlite:///") and not Path(self.url[10:]).exists():
                return None
            kwargs = {"connect_args": {"timeout": 60}} if self.url.startswith("sqlite") else {}
            with contextlib.suppress(Exception):  # tables being created by the worker
                self.storage = RDBStorage(self.url, engine_kwargs=kwargs)
        return self.storage

    def trials(self) -> list[FrozenTrial]:
        storage = self._open()
        if storage is None:
            return []
        try:
            study_id = storage.get_study_id_from_name(self.study)
        except KeyError:
            return []
        return storage.get_all_trials(study_id, deepcopy=False)

    def observe(self) -> list[FrozenTrial]:
        trials = self.trials()
        self.observations += 1
        for trial in trials:
            if trial.state == TrialState.COMPLETE:
                self._seen(trial.number, trial.value)
        return trials

    def _seen(self, number: int, value: float) -> None:
        first = self.complete.setdefault(number, value)
        assert first == value, f"trial {number}: value {first} changed to {value}"

    def _query(self, sql: str) -> list:
        if self._open() is None:
            return []
        try:
            with self.storage.engine.connect() as connection:
                return list(connection.execute(sqlalchemy.text(sql), {"name": self.study}))
        except sqlalchemy.exc.DBAPIError:  # tables not created yet
            return []

    def running(self) -> set[int]:
        """RUNNING trial numbers, by one light query (polled every few milliseconds); also
        an observation of the COMPLETE values."""
        rows = self._query(
            "SELECT t.number, t.state, v.value FROM trials t "
            "JOIN studies s ON s.study_id = t.study_id "
            "LEFT JOIN trial_values v ON v.trial_id = t.trial_id "
            "WHERE s.study_name = :name"
        )
        self.observations += 1
        for number, state, value in rows:
            if state == "COMPLETE":
                self._seen(number, value)
        return {number for number, state, _ in rows if state == "RUNNING"}


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def kill_group(process: subprocess.Popen) -> bool:
    """SIGKILL the process group; True when the search was still running (a real kill)."""
    alive = process.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert wait_until(lambda: not group_alive(process.pid), 30, 0.1), "workers survived"
    return alive


# --- the kill loop -----------------------------------------------------------------------
def kill_repeatedly(
    command: list[str], watcher: Watcher, log: Path, seed: int, startup_max: float
) -> dict:
    """Start, kill (KILLS times, a seeded mix of moments), sleep past the grace period."""
    rng = random.Random(seed)
    modes = ["startup", "first_trial", "mid_trial"] * 4
    rng.shuffle(modes)
    injected: dict[str, int] = {}
    for mode in modes[:KILLS]:
        before = watcher.running()
        with open(log, "ab") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        try:
            if mode == "startup":
                time.sleep(rng.uniform(0.5, startup_max))
            else:
                started = wait_until(
                    lambda b=before, p=process: bool(watcher.running() - b) or p.poll() is not None,
                    120,
                    0.01 if mode == "first_trial" else 0.1,
                )
                assert started, f"no trial started within 120 s\n{log.read_text()[-3000:]}"
                pause = rng.uniform(0.0, 0.05) if mode == "first_trial" else rng.uniform(0.3, 2.5)
                time.sleep(pause)
        finally:
            killed = kill_group(process)
        if killed:
            injected[mode] = injected.get(mode, 0) + 1
        watcher.observe()
        time.sleep(GRACE + 0.5)  # past the grace period: the killed trials are stale
    return injected


def check_study(watcher: Watcher, n_trials: int, best_params: Path) -> dict:
    """Everything that must hold after the kills and the final run."""
    trials = watcher.observe()
    by_number = {t.number: t for t in trials}
    assert len(by_number) == len(trials), "duplicate trial numbers"
    assert sorted(by_number) == list(range(len(trials))), "trial numbers not consecutive"
    states = {t.number: t.state.name for t in trials}

    failed = [t for t in trials if t.state == TrialState.FAIL]
    retried = {
        t.system_attrs["retry_history"][-1] for t in trials if "retry_history" in t.system_attrs
    }
    unretried = [t.number for t in failed if t.number not in retried]

    assert not [n for n, s in states.items() if s in ("WAITING", "RUNNING")], states
    assert not unretried, f"failed trials never retried: {unretried} ({states})"
    for number, value in watcher.complete.items():
        trial = by_number[number]
        assert trial.state == TrialState.COMPLETE and trial.value == value, (number, states)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials, states

    assert failed, f"no kill landed in a trial: no retry ({states})"
    for fail in failed:
        # Its retry is the one whose history ends with it (a retry of a retry lists both).
        retries = [
            t for t in trials if t.system_attrs.get("retry_history", [None])[-1] == fail.number
        ]
        assert len(retries) == 1, (fail.number, [t.number for t in retries])
        retry = retries[0]
        # The parameters the failed trial had sampled before it died, fixed; the rest (if it
        # died before sampling them all) sampled anew.
        assert fail.params.items() <= retry.params.items(), (fail.number, retry.number)
        assert retry.system_attrs["failed_trial"] == fail.system_attrs.get(
            "failed_trial", fail.number
        )

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    study = optuna.load_study(study_name=watcher.study, storage=watcher.storage)
    assert study.best_value == max(t.value for t in complete)
    best = yaml.safe_load(best_params.read_text())
    first_best = min(t.number for t in complete if t.value == study.best_value)  # ties: lowest
    assert best["best"] == {"trial": first_best, "value": study.best_value}
    assert best["trial"] in (first_best, 0)  # the best, or the baseline within the noise

    return {"failed": len(failed), "complete": len(complete), "trials": len(trials)}


def run_kill_scenario(root: Path, storage: str, workers: int, n_trials: int, seed: int):
    study = f"killed-{workers}w-{uuid.uuid4().hex[:8]}"
    overrides = search_overrides(root, storage, study, n_trials, workers)
    command = search_command(*overrides)
    watcher = Watcher(storage, study)
    log = root / f"{study}.log"
    started = time.monotonic()
    try:
        injected = kill_repeatedly(command, watcher, log, seed, startup_max=1.5 + 2.0 * workers)
        print(f"\n{study}: kills {injected} in {time.monotonic() - started:.0f} s", flush=True)
        final = subprocess.run(
            command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
        )
        assert final.returncode == 0, f"{final.stdout}\n{final.stderr}"
        assert sum(injected.values()) == KILLS, (injected, log.read_text()[-3000:])
        summary = check_study(watcher, n_trials, root / "reports" / study / "best_params.yaml")
        print(
            f"\n{study} on {storage.split(':')[0]}: {sum(injected.values())} kills {injected}, "
            f"{watcher.observations} observations, {summary}, "
            f"{time.monotonic() - started:.0f} s"
        )
    finally:
        if not storage.startswith("sqlite"):
            with contextlib.suppress(Exception):
                optuna.delete_study(study_name=study, storage=storage)


# --- the tests -----------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_one_worker_killed_ten_times_loses_nothing(digits_root):
    run_kill_scenario(digits_root, sqlite_url(digits_root, "one"), 1, n_trials=20, seed=7)


@pytest.mark.timeout(600)
def test_three_workers_killed_ten_times_lose_nothing_sqlite(digits_root):
    run_kill_scenario(digits_root, sqlite_url(digits_root, "three"), 3, n_trials=40, seed=11)


def postgres_url() -> str | None:
    return os.environ.get("POSTGRES_URL")


@pytest.mark.timeout(600)
@pytest.mark.skipif(postgres_url() is None, reason="POSTGRES_URL not set (CI sets it)")
def test_three_workers_killed_ten_times_lose_nothing_postgresql(digits_root):
    run_kill_scenario(digits_root, postgres_url(), 3, n_trials=40, seed=13)


# --- the two windows, forced -------------------------------------------------------------
def killed_at(root: Path, storage: str, study: str, code: str) -> None:
    """Run ``code`` in a fresh process that has the study open through the pipeline's own
    ``make_storage`` (heartbeats on); ``code`` ends by SIGKILLing its own process."""
    overrides = search_overrides(root, storage, study, 2, 1)
    script = (
        "import os, signal, optuna\n"
        "from pipeline import search\n"
        "from pipeline.config import compose_config\n"
        f"cfg = compose_config({overrides!r})\n"
        "study = search.create_study(cfg)\n"
        "die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n" + code
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True, timeout=120
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()


def finish(root: Path, storage: str, study: str) -> list[FrozenTrial]:
    time.sleep(GRACE + 1.0)
    command = search_command(*search_overrides(root, storage, study, 2, 1))
    final = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    return Watcher(storage, study).observe()


@pytest.mark.timeout(300)
def test_kill_between_ask_and_first_heartbeat(digits_root):
    """The worker dies right after ``study.ask()`` created the trial (RUNNING, no heartbeat
    yet): the rerun must fail that trial, retry it and still finish ``n_trials``."""
    storage, study = sqlite_url(digits_root, "ask"), "killed-after-ask"
    killed_at(digits_root, storage, study, "study.ask()\ndie()\n")
    trials = finish(digits_root, storage, study)
    states = [t.state.name for t in trials]
    assert "RUNNING" not in states, states
    assert states[0] == "FAIL" and any(t.system_attrs.get("failed_trial") == 0 for t in trials)
    assert states.count("COMPLETE") == 2, states


@pytest.mark.timeout(300)
def test_kill_between_failing_a_stale_trial_and_adding_its_retry(digits_root):
    """A stale trial is failed, and the worker dies before the retry is written: the
    rerun must still retry it."""
    storage, study = sqlite_url(digits_root, "retry"), "killed-before-retry"
    # A worker dies mid-trial (a heartbeat was sent, then nothing).
    killed_at(
        digits_root, storage, study,
        "trial = study.ask()\nstudy._storage.record_heartbeat(trial._trial_id)\n"
        "trial.suggest_float('learning_rate', 0.01, 1.0, log=True)\ndie()\n",
    )  # fmt: skip
    time.sleep(GRACE + 1.0)
    # The next worker fails it and dies before the retry callback has written anything.
    killed_at(
        digits_root, storage, study,
        "from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry\n"
        "Retry.__call__ = die\n"
        "optuna.storages.fail_stale_trials(study)\n"
        "os._exit(3)  # not reached: the callback kills the process\n",
    )  # fmt: skip
    trials = finish(digits_root, storage, study)
    assert trials[0].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1, trials
    # It had sampled only learning_rate before it died: that value is kept, the rest new.
    assert trials[0].params.items() <= retries[0].params.items(), trials


# --- issue 12, class 5 and 6 ---------------------------------------------------------------
def start_search(*overrides: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            search_command(*overrides), cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def kill_mid_trial(process: subprocess.Popen, running: Callable[[], bool], log: Path) -> None:
    """SIGKILL the search's whole group while a trial is RUNNING (``running()`` reads the
    storage). A short trial can end between a check and the kill, so the group is frozen
    (SIGSTOP) and the storage read again before the kill; when no trial is running then,
    it goes on and we try again."""
    for _ in range(20):
        started = wait_until(lambda: running() or process.poll() is not None, 120)
        assert started and process.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGSTOP)
        if running():
            assert kill_group(process)
            return
        os.killpg(process.pid, signal.SIGCONT)
    raise AssertionError(f"no trial was running at any of 20 tries\n{log.read_text()[-3000:]}")


def finished_states(trials: list[FrozenTrial]) -> dict[str, int]:
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return states


@pytest.mark.timeout(300)
def test_rerun_inside_the_grace_period_finishes_exactly_n_trials(digits_root):
    """A rerun right after a crash (heartbeats not yet stale: grace period 60 s) sees that
    the killed trial's process is gone, fails and retries it, and ends with n_trials."""
    storage, study = sqlite_url(digits_root, "grace"), "rerun-in-grace"
    overrides = [
        *(
            o
            for o in search_overrides(digits_root, storage, study, 4, 1)
            if not o.startswith("search.grace_period=")
        ),
        "search.grace_period=60",
    ]
    log = digits_root / f"{study}.log"
    watcher = Watcher(storage, study)
    kill_mid_trial(start_search(*overrides, log=log), lambda: bool(watcher.running()), log)
    started = time.monotonic()
    rerun = subprocess.run(search_command(*overrides), cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=240)  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert time.monotonic() - started < 60, "waited for the grace period instead of recovering"
    trials = watcher.observe()
    states = finished_states(trials)
    assert states.get("COMPLETE", 0) == 4 and "RUNNING" not in states, states
    assert states.get("FAIL", 0) >= 1 and any("failed_trial" in t.system_attrs for t in trials)


@pytest.mark.timeout(300)
def test_journal_storage_recovers_a_crashed_trial(digits_root):
    """Journal storage has no heartbeats: the killed trial is found by its dead pid."""
    path = digits_root / "journal" / "study.log"
    storage, study = f"journal://{path}", "journal-crash"
    overrides = search_overrides(digits_root, storage, study, 3, 1)
    log = digits_root / f"{study}.log"
    process = start_search(*overrides, log=log)

    def running() -> bool:
        if not path.exists():
            return False
        with contextlib.suppress(KeyError):
            journal = optuna.load_study(study_name=study, storage=journal_storage(path))
            return any(t.state == TrialState.RUNNING for t in journal.trials)
        return False

    kill_mid_trial(process, running, log)
    rerun = subprocess.run(search_command(*overrides), cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=240)  # fmt: skip
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    trials = optuna.load_study(study_name=study, storage=journal_storage(path)).trials
    states = finished_states(trials)
    assert states.get("COMPLETE", 0) == 3 and "RUNNING" not in states, states
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    assert failed and {t.system_attrs.get("failed_trial") for t in trials} >= set(failed)


def journal_storage(path: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


@pytest.mark.timeout(300)
def test_workers_die_with_their_parent(digits_root):
    """SIGKILL of the parent process only (not its group): no worker is left after 30 s."""
    storage, study = sqlite_url(digits_root, "orphans"), "parent-killed"
    overrides = search_overrides(digits_root, storage, study, 12, 3)
    log = digits_root / f"{study}.log"
    process = start_search(*overrides, log=log)
    watcher = Watcher(storage, study)
    assert wait_until(lambda: len(watcher.running()) >= 2, 180, 0.1), log.read_text()[-3000:]
    process.send_signal(signal.SIGKILL)  # the parent only
    process.wait(timeout=30)
    assert wait_until(lambda: not group_alive(process.pid), 30, 0.2), "workers outlived parent"


@pytest.mark.timeout(400)
def test_three_searches_racing_on_a_fresh_directory(tmp_path, digits_root):
    """Three searches started together on a directory with no optuna.db and no mlflow.db:
    all succeed, the study has exactly n_trials, each trial has one nested MLflow run."""
    from mlflow.tracking import MlflowClient

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    storage, study, n_trials = sqlite_url(fresh, "optuna"), "racing", 9
    replaced = ("tracking=", "paths.search=", "search.epochs=")
    overrides = [
        *(
            o
            for o in search_overrides(digits_root, storage, study, n_trials, 1)
            if not o.startswith(replaced)
        ),
        f"paths.search={fresh / 'search'}",
        "tracking=default",
        f"tracking.uri=sqlite:///{fresh / 'mlflow.db'}",
        "search.epochs=3",
    ]
    processes = [
        subprocess.Popen(
            search_command(*overrides),
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=360)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], "\n".join(outputs)
    assert not any("continuing without tracking" in out for out in outputs), "\n".join(outputs)
    trials = Watcher(storage, study).observe()
    assert sorted(t.number for t in trials) == list(range(n_trials))
    assert finished_states(trials).get("COMPLETE", 0) == n_trials
    client = MlflowClient(tracking_uri=f"sqlite:///{fresh / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nndl-pipeline")
    runs = client.search_runs([experiment.experiment_id], max_results=200)
    parents = [r for r in runs if r.data.tags.get("dvc_stage") == "search"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(int(c.data.params["trial"]) for c in children) == list(range(n_trials))
