"""The MLflow adapter on a temporary SQLite store: secrets masked by parsing, runs through
the client only, models without code, the registry's champion alias, stale runs closed,
a store created safely by racing processes, deadlines against a silent server."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from sklearn.datasets import load_digits

from pipeline import nn, tracking
from pipeline.estimators import MLPClassifier
from pipeline.tracking import (
    CHAMPION_ALIAS,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    HOST_TAG,
    PID_TAG,
    NullTracker,
    Tracker,
    TrackingError,
    mask_secrets,
    model_requirements,
    registered_model_name,
    skops_trusted_types,
)
from tests.environ import child_environment

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-Pw"


# --- secrets ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw@host/db", "postgresql://u:***@host/db"),
        ("postgresql://:pw@host/db", "postgresql://:***@host/db"),  # empty user name
        ("postgresql+psycopg2://u:p/w:x@h:5432/db", "postgresql+psycopg2://u:***@h:5432/db"),
        ("mysql+pymysql://u:p%40ss@h/db", "mysql+pymysql://u:***@h/db"),
        ("postgresql://h/db?password=pw", "postgresql://h/db?password=%2A%2A%2A"),
        ("http://alice:pw@127.0.0.1:5000", "http://alice:***@127.0.0.1:5000"),
        ("https://:token@host/path", "https://:***@host/path"),
        ("http://u:p@ss@host:5/x", "http://u:***@host:5/x"),  # urllib: last @ ends user info
        ("http://u:pa/ss@host:5000", "http://u:***@host:5000"),  # raw / in the password
        ("http://host/x?token=abc&a=1", "http://host/x?token=***&a=1"),
        ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("journal:///tmp/x.log", "journal:///tmp/x.log"),
        ("no URL here: a:b@c", "no URL here: a:b@c"),
    ],
)
def test_mask_secrets_parses_urls(text, expected):
    assert mask_secrets(text) == expected


def test_mask_secrets_finds_urls_inside_error_messages():
    text = (
        "cannot open 'postgresql://nndl:pa/ss@db:5432/optuna' (refused); "
        "API request to http://alice:pw2@h:1/api/2.0/mlflow/runs/create failed"
    )
    masked = mask_secrets(text)
    assert "pa/ss" not in masked and "pw2" not in masked
    assert "postgresql://nndl:***@db:5432/optuna' (refused)" in masked
    assert "http://alice:***@h:1/api/2.0/mlflow/runs/create failed" in masked


def test_mask_secrets_leaves_the_punctuation_after_a_url_in_a_message_alone():
    text = "failed while starting the run (postgresql://u:pw@127.0.0.1:1/db): no psycopg"
    assert mask_secrets(text) == (
        "failed while starting the run (postgresql://u:***@127.0.0.1:1/db): no psycopg"
    )
    assert mask_secrets("see http://a:pw@h:1/x.") == "see http://a:***@h:1/x."


def test_mask_secrets_hides_the_user_info_of_urls_it_cannot_parse():
    assert mask_secrets("mysql://u:pw@[::1/x") == "mysql://***@[::1/x"


@pytest.mark.parametrize(
    ("configured", "message", "hidden"),
    [
        (
            "postgresql://u:s3cr3t PW@127.0.0.1/db",
            "cannot open postgresql://u:s3cr3t PW@1",
            "s3cr3t",
        ),
        ("user:s3cr3tPW@host", "search.storage='user:s3cr3tPW@host'", "s3cr3tPW"),
        ("//user:s3cr3tPW@host/db", "at //user:s3cr3tPW@host/db", "s3cr3tPW"),
        ("databricks://user:TrkS3cr3t@h", "run put-secret user TrkS3cr3t@h-host", "TrkS3cr3t"),
        ("mysql://u:Sup3r@S3cr3t@host/db", "u:Sup3r@S3cr3t@host", "S3cr3t"),
        ("mysql://u:p%40ss%2Fw@host/db", "password 'p@ss/w' refused", "p@ss/w"),
        ("sqlite:///x.db?password=qpw123&mode=ro", "x.db?password=qpw123&mode=ro.lock", "qpw123"),
    ],
)
def test_remembered_passwords_are_masked_in_any_form(configured, message, hidden):
    tracking.remember_secrets(configured)
    assert hidden not in mask_secrets(message)
    assert tracking.MASK in mask_secrets(message)


def test_short_or_absent_passwords_are_not_remembered():
    tracking.remember_secrets(
        "postgresql://u:pw@h/db", "http://127.0.0.1:5000", "sqlite:///a.db", 3
    )
    assert mask_secrets("a pw, a u, a.db") == "a pw, a u, a.db"


def test_a_stage_hides_a_password_it_cannot_parse_as_a_url(tmp_path):
    from pipeline import augment, prepare
    from pipeline.config import compose_config
    from tests.conftest import stage_overrides

    overrides = stage_overrides(tmp_path, "data=digits", "augment=none", "tracking=off")
    prepare.run(compose_config(overrides))
    augment.run(compose_config(overrides))
    url = "postgresql+psycopg2://user:s3cr3t PW@127.0.0.1:1/db"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.search", *overrides, f"search.storage={url}"],
        cwd=Path(__file__).resolve().parents[1],
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "s3cr3t" not in done.stdout + done.stderr
    assert done.stderr.startswith("config error: search.storage='postgresql+psycopg2://user:***@")


@pytest.mark.parametrize("value", [None, 3, 0.5, ["postgresql://u:pw@h/db"]])
def test_mask_secrets_returns_other_values_unchanged(value):
    assert mask_secrets(value) is value


# --- what a logged model trusts and needs ----------------------------------------------------
def test_skops_trusted_types_come_from_the_registries():
    trusted = set(skops_trusted_types())
    expected = {
        *(f"{c.__module__}.{c.__qualname__}" for c in nn.ACTIVATIONS.values()),
        *(f"{c.__module__}.{c.__qualname__}" for c in nn.COSTS.values()),
        "pipeline.nn.layers.Conv2D",
        "pipeline.nn.layers.Dense",
        "pipeline.nn.network.Network",
        "pipeline.estimators.MLPClassifier",
        "pipeline.estimators.CNNClassifier",
    }
    assert expected <= trusted
    assert all(name.startswith("pipeline.") for name in trusted)


def test_a_new_layer_is_trusted_without_editing_a_list():
    new_layer = type("Upsample2D", (nn.Layer,), {"__module__": "pipeline.nn.layers"})
    assert "pipeline.nn.layers.Upsample2D" in skops_trusted_types()
    del new_layer


def test_the_required_distribution_installs_this_package():
    import importlib.metadata

    from pipeline.tracking import DISTRIBUTION

    files = {str(f) for f in importlib.metadata.distribution(DISTRIBUTION).files or []}
    top_level = importlib.metadata.distribution(DISTRIBUTION).read_text("top_level.txt") or ""
    assert "pipeline/__init__.py" in files or "pipeline" in top_level.split()


def test_model_requirements_pin_the_installed_package():
    from pipeline.tracking import DISTRIBUTION

    requirements = model_requirements()
    names = [r.split("==")[0] for r in requirements]
    assert DISTRIBUTION in names and "scikit-learn" in names and "skops" in names
    assert all("==" in r for r in requirements)


# --- runs through the client -----------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return MLPClassifier(hidden_layer_sizes=(16,), epochs=2, random_state=0).fit(X, y)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store (with its artifacts beside it) for the module's tests."""
    root = tmp_path_factory.mktemp("store")
    return f"sqlite:///{root / 'mlflow.db'}", root


class Epoch:
    """What the estimators hand their callbacks (only what the logger reads)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def metrics(self) -> dict:
        return {"train_loss": 1.0 / self.epoch, "val_accuracy": None, "grad_norm_dense1": 0.1}


@pytest.fixture(scope="module")
def logged_run(store, fitted, digits, tmp_path_factory):
    """A run logged from a working directory of its own, as train does it."""
    uri, root = store
    cwd = tmp_path_factory.mktemp("cwd")
    previous = Path.cwd()
    os.chdir(cwd)
    environment = dict(os.environ)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracker = Tracker(uri, "logged")
            tracker.start("run", tags={"storage": f"postgresql://u:{SECRET}@h/db"})
            tracker.log_config({"tracking": {"uri": f"http://a:{SECRET}@h:1"}, "seed": 3})
            log_epoch = tracker.epoch_logger()
            for epoch in (1, 2, 3):
                log_epoch(Epoch(epoch))
            tracker.log_metrics({"best": 0.5, "nan": float("nan"), "none": None})
            tracker.log_model(fitted, digits[0][:5])
            tracker.end()
    finally:
        os.chdir(previous)
    return {
        "tracker": tracker,
        "client": MlflowClient(uri),
        "cwd": cwd,
        "root": root,
        "warnings": [f"{w.category.__name__}: {w.message} ({w.filename})" for w in caught],
        "environment_changed": {
            k for k in {*os.environ, *environment} if os.environ.get(k) != environment.get(k)
        },
    }


def test_run_is_logged_through_the_client(logged_run):
    client, tracker = logged_run["client"], logged_run["tracker"]
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"tracking.uri": "http://a:***@h:1", "seed": "3"}
    assert run.data.tags["storage"] == "postgresql://u:***@h/db"
    assert run.data.tags[PID_TAG] == str(os.getpid()) and run.data.tags[HOST_TAG]
    assert run.data.metrics["best"] == 0.5 and "nan" not in run.data.metrics
    history = client.get_metric_history(tracker.run_id, "grad_norm_dense1")
    assert [m.step for m in history] == [1, 2, 3]


def test_epoch_metrics_go_together_and_all_arrive(store, monkeypatch):
    uri, _ = store
    tracker = Tracker(uri, "batched")
    tracker.start("run")
    client = tracker._open()
    requests = []
    send = client.log_batch
    monkeypatch.setattr(
        client, "log_batch", lambda *a, **k: requests.append(k.get("metrics")) or send(*a, **k)
    )
    log_epoch = tracker.epoch_logger()
    for epoch in range(1, 21):  # epochs far shorter than EPOCH_BATCH_SECONDS: no request yet
        log_epoch(Epoch(epoch))
    assert requests == []
    tracker.end()  # sends them, in one request
    assert len(requests) == 1 and len(requests[0]) == 2 * 20
    history = MlflowClient(uri).get_metric_history(tracker.run_id, "train_loss")
    assert [m.step for m in history] == list(range(1, 21))


def test_experiment_opens_on_its_runs_in_the_mlflow_ui(logged_run):
    experiment = logged_run["client"].get_experiment(logged_run["tracker"].experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_existing_experiment_gets_its_kind(store):
    uri, _ = store
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("older", artifact_location="file:///tmp/unused")
    tracker = Tracker(uri, "older")
    tracker.start("run")
    tracker.end()
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_artifacts_go_beside_the_database_not_the_working_directory(logged_run):
    assert not (logged_run["cwd"] / "mlruns").exists()
    assert list(logged_run["cwd"].iterdir()) == []
    artifact_uri = logged_run["client"].get_run(logged_run["tracker"].run_id).info.artifact_uri
    assert artifact_uri.startswith((logged_run["root"] / "mlruns").as_uri())


def test_no_environment_variable_is_set_and_no_warning_escapes(logged_run):
    # MLflow's telemetry records its own session id on first use; nothing else may change.
    changed = logged_run["environment_changed"]
    assert {k for k in changed if not k.startswith("_MLFLOW_TELEMETRY")} == set()
    assert logged_run["warnings"] == []


def test_logged_model_carries_no_code_and_loads_from_the_installed_package(
    logged_run, fitted, digits
):
    client, tracker = logged_run["client"], logged_run["tracker"]
    model = client.get_logged_model(tracker.model_id)
    assert model.source_run_id == tracker.run_id and model.status == LoggedModelStatus.READY
    local = Path(model.artifact_location.removeprefix("file://"))
    files = [p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()]
    assert "MLmodel" in files and not [f for f in files if f.endswith(".py")], files
    requirements = (local / "requirements.txt").read_text()
    assert "pipeline==" in requirements and "skops==" in requirements
    mlflow.set_tracking_uri(str(client.tracking_uri))
    loaded = mlflow.sklearn.load_model(f"runs:/{tracker.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(digits[0]), fitted.predict(digits[0]))


def test_resumed_run_keeps_its_params_and_finishes_again(logged_run, store):
    uri, _ = store
    run_id = logged_run["tracker"].run_id
    tracker = Tracker(uri, "logged")
    tracker.start("ignored", run_id=run_id, tags={"dvc_stage": "evaluate"})
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
    tracker.log_config({"seed": 4, "evaluate": {"grid": 9}})  # seed stays 3: write-once
    tracker.end()
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["dvc_stage"] == "evaluate"
    assert run.data.params["seed"] == "3" and run.data.params["evaluate.grid"] == "9"


def test_a_directory_is_logged_without_writes_in_progress(store, tmp_path, monkeypatch):
    """Searches sharing paths.search write into it while one logs it: the temporary files
    of atomic writes are left out, and a file gone since it was listed is skipped."""
    uri, _ = store
    directory = tmp_path / "search"
    (directory / "plots").mkdir(parents=True)
    (directory / "best_params.yaml").write_text("a: 1\n")
    (directory / "plots" / "contour.png").write_bytes(b"png")
    (directory / "plots" / ".contour.png.xvy_donf.tmp").write_bytes(b"partial")
    (directory / "trials.csv").write_text("number\n")
    tracker = Tracker(uri, "directories")
    tracker.start("run")
    client = tracker._open()
    send = client.log_artifact

    def log_racing(run_id, local, artifact_path=None):
        if local.endswith("contour.png"):
            Path(local).unlink()  # gone after it was listed, before it was copied
        send(run_id, local, artifact_path)

    monkeypatch.setattr(client, "log_artifact", log_racing)
    tracker.log_artifact(directory, "search")
    monkeypatch.setattr(client, "log_artifact", send)
    tracker.log_artifact(directory)  # no artifact path: the files at the run's root
    tracker.end()
    assert tracker.active  # no warning: nothing failed
    listed = MlflowClient(uri).list_artifacts

    def files(path=None):
        found = []
        for info in listed(tracker.run_id, path):
            found += files(info.path) if info.is_dir else [info.path]
        return found

    assert sorted(files()) == [
        "best_params.yaml",
        "search/best_params.yaml",
        "search/trials.csv",
        "trials.csv",
    ]


def test_null_tracker_does_nothing(tmp_path):
    tracker = NullTracker()
    tracker.start("x")
    tracker.log_metrics({"a": 1.0})
    assert tracker.close_stale_runs() == [] and tracker.register_champion("m", "a", 1, "c") is None
    assert tracker.run_id is None


# --- model registry --------------------------------------------------------------------------
def register(uri, fitted, digits, value, checksum="split-a", name="nndl-mlp-digits"):
    tracker = Tracker(uri, "registry")
    tracker.start("run")
    tracker.log_model(fitted, digits[0][:5])
    result = tracker.register_champion(name, "test_accuracy", value, checksum)
    tracker.end()
    return result


def champion(uri, name="nndl-mlp-digits") -> str:
    client = MlflowClient(uri, registry_uri=uri)
    return str(client.get_model_version_by_alias(name, CHAMPION_ALIAS).version)


def test_champion_alias_moves_only_on_improvement(store, fitted, digits):
    uri, _ = store
    first = register(uri, fitted, digits, 0.90)
    assert first.promoted and first.version == first.champion == "1" and champion(uri) == "1"
    worse = register(uri, fitted, digits, 0.85)
    assert not worse.promoted and worse.version == "2" and champion(uri) == "1"
    equal = register(uri, fitted, digits, 0.90)
    assert not equal.promoted and champion(uri) == "1"
    other_split = register(uri, fitted, digits, 0.99, checksum="split-b")
    assert not other_split.promoted and "another test split" in other_split.reason
    assert champion(uri) == "1"
    better = register(uri, fitted, digits, 0.93)
    assert better.promoted and better.version == "5" and champion(uri) == "5"
    version = MlflowClient(uri, registry_uri=uri).get_model_version("nndl-mlp-digits", "5")
    assert version.tags["test_accuracy"] == "0.93"
    assert version.tags["test_split_checksum"] == "split-a"


def test_champion_loads_by_alias(store, fitted, digits):
    uri, _ = store
    register(uri, fitted, digits, 0.5, name=registered_model_name("mlp", "digits_alias"))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    loaded = mlflow.sklearn.load_model("models:/nndl-mlp-digits_alias@champion")
    np.testing.assert_array_equal(loaded.predict(digits[0]), fitted.predict(digits[0]))


def test_a_run_without_a_model_is_not_registered(store):
    uri, _ = store
    tracker = Tracker(uri, "registry")
    tracker.start("no model")
    result = tracker.register_champion("nndl-none", "test_accuracy", 1.0, "c")
    assert result is not None and result.version is None and not result.promoted


# --- stale runs ----------------------------------------------------------------------------
START_AND_DIE = """
import os, signal, sys
from pipeline.tracking import Tracker
tracker = Tracker(sys.argv[1], "stale")
tracker.start("killed")
print(tracker.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}


def test_runs_of_killed_processes_are_closed(store):
    uri, _ = store
    killed = subprocess.run(
        [sys.executable, "-c", START_AND_DIE, uri], capture_output=True, text=True,
        env=child_env(), timeout=120,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    dead_run = killed.stdout.split()[-1]
    client = MlflowClient(uri)
    assert client.get_run(dead_run).info.status == "RUNNING"
    live = Tracker(uri, "stale")
    live.start("alive in this process")
    foreign = client.create_run(live.experiment_id, tags={PID_TAG: "1", HOST_TAG: "elsewhere"})
    untagged = client.create_run(live.experiment_id)

    closer = Tracker(uri, "stale")
    assert closer.close_stale_runs() == [dead_run]
    assert client.get_run(dead_run).info.status == "KILLED"
    for run_id in (live.run_id, foreign.info.run_id, untagged.info.run_id):
        assert client.get_run(run_id).info.status == "RUNNING"
    assert closer.close_stale_runs() == []


# --- first use of a store --------------------------------------------------------------------
RACE = """
import sys, time
from pipeline.tracking import Tracker
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
tracker = Tracker(sys.argv[1], "race", on_error="fail")
tracker.start("racer")
tracker.log_metrics({"x": 1.0}, step=1)
tracker.end()
"""


@pytest.mark.slow  # about 30 s: three interpreters importing MLflow on two shared cores
def test_processes_racing_on_a_fresh_store_all_log(tmp_path):
    """Without the store-creation lock this fails ("duplicate column name: step")."""
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    start_at = str(time.time() + 8)  # after every interpreter has imported MLflow
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, uri, start_at],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    results = [(p.wait(timeout=180), p.stderr.read()) for p in racers]
    assert all(code == 0 for code, _ in results), results
    experiment = MlflowClient(uri).get_experiment_by_name("race")
    runs = MlflowClient(uri).search_runs([experiment.experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}


# --- servers that are not there, or never answer ------------------------------------------
@contextlib.contextmanager
def hanging_server(answer_health: bool):
    """An HTTP server on 127.0.0.1 that answers ``/health`` (when ``answer_health``) and
    holds every other request (MLflow's API calls) without answering."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if answer_health and self.path == "/health":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")
            else:
                release.wait(60)

        do_POST = do_GET

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("answer_health", [True, False], ids=["api-hangs", "all-hang"])
def test_hanging_server_costs_one_timeout_and_a_masked_warning(capsys, answer_health):
    environment = dict(os.environ)
    with hanging_server(answer_health) as port:
        tracker = Tracker(f"http://alice:{SECRET}@127.0.0.1:{port}", "x", timeout=1)
        started = time.monotonic()
        tracker.start("run")
        tracker.log_metrics({"a": 1.0})
        tracker.end()
        seconds = time.monotonic() - started
    err = capsys.readouterr().err
    assert seconds < 5 and not tracker.active
    assert err.count("warning:") == 1 and f"alice:***@127.0.0.1:{port}" in err, err
    expected = "no answer within 1 s" if answer_health else "cannot reach the server"
    assert expected in err and SECRET not in err
    changed = {k for k in os.environ if os.environ.get(k) != environment.get(k)}
    assert {k for k in changed if not k.startswith("_MLFLOW_TELEMETRY")} == set()


def test_the_server_is_asked_beside_the_imports_not_after_them(capsys, monkeypatch):
    imports_seconds, timeout = 2.0, 2

    def slow_imports(remote: bool, for_model: bool) -> None:
        time.sleep(imports_seconds)

    monkeypatch.setattr(tracking, "_import_tracking", slow_imports)
    with hanging_server(answer_health=False) as port:
        tracker = Tracker(f"http://127.0.0.1:{port}", "x", timeout=timeout)
        started = time.monotonic()
        tracker.preload(for_model=True)
        tracker.start("run")
        seconds = time.monotonic() - started
    assert not tracker.active and "cannot reach the server" in capsys.readouterr().err
    # One after the other they would take imports_seconds + timeout = 4 s.
    assert seconds < max(imports_seconds, timeout) + 1.5, seconds


def test_closed_port_with_on_error_fail_raises_at_once_with_a_masked_error():
    port = closed_port()
    tracker = Tracker(f"http://:{SECRET}@127.0.0.1:{port}", "x", on_error="fail", timeout=30)
    started = time.monotonic()
    with pytest.raises(TrackingError, match="Connection refused") as raised:
        tracker.start("run")
    assert time.monotonic() - started < 10  # not the 30 s timeout
    assert SECRET not in str(raised.value) and f":***@127.0.0.1:{port}" in str(raised.value)


def test_a_read_only_sqlite_store_fails_at_once(monkeypatch, tmp_path, capsys):
    store = tmp_path / "ro" / "mlflow.db"
    store.parent.mkdir()
    real_access = os.access
    # A read-only disk (root may write anywhere else): the store's directory is not writable.
    monkeypatch.setattr(
        tracking.os, "access", lambda p, mode: False if p == store.parent else real_access(p, mode)
    )
    tracker = Tracker(f"sqlite:///{store}", "x", on_error="fail")
    with pytest.raises(TrackingError, match=f"{store}: the tracking store cannot be written"):
        tracker.start("run")
    warned = Tracker(f"sqlite:///{store}", "x", on_error="warn")
    warned.start("run")
    assert not warned.active and "cannot be written" in capsys.readouterr().err
    assert not store.exists()


@pytest.mark.parametrize("on_error", ["fail", "warn"])
def test_a_failed_preload_fails_the_start_by_the_policy(capsys, monkeypatch, tmp_path, on_error):
    def broken(remote: bool, for_model: bool) -> None:
        raise ImportError(f"cannot import mlflow_store_x (postgresql://u:{SECRET}@h/db)")

    monkeypatch.setattr(tracking, "_import_tracking", broken)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "x", on_error=on_error)
    tracker.preload()  # keeps the error for the first call that needs the store
    if on_error == "fail":
        with pytest.raises(TrackingError, match="starting the run.*mlflow_store_x") as raised:
            tracker.start("run")
        assert SECRET not in str(raised.value)
    else:
        tracker.start("run")
        tracker.end()
        err = capsys.readouterr().err
        assert not tracker.active and err.count("warning:") == 1 and SECRET not in err
    assert not (tmp_path / "mlflow.db").exists()


def test_preloading_touches_no_store_until_the_run_starts(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "preloaded")
    tracker.preload(for_model=True)
    assert "mlflow.sklearn" in sys.modules and "skops.io" in sys.modules
    assert "pipeline.artifacts" in sys.modules
    assert list(tmp_path.iterdir()) == []  # imports only: no database, no artifacts
    tracker.start("run")
    tracker.log_metrics({"a": 1.0})
    tracker.end()
    run = MlflowClient(uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"a": 1.0}


def test_evaluation_report_masks_passwords(tmp_path):
    from pipeline.reports import write_evaluation_report

    metrics = {"test_accuracy": 0.9, "test_loss": 0.3, "macro_f1": 0.9, "n_test": 10,
               "epochs": 1, "n_train": 20}  # fmt: skip
    summary = {"name": "mlp", "dataset": "digits", "store": f"postgresql://:{SECRET}@h/db"}
    path = write_evaluation_report(tmp_path / "evaluation.md", metrics, {}, summary, {})
    text = path.read_text()
    assert SECRET not in text and "postgresql://:***@h/db" in text


# --- cost -------------------------------------------------------------------------------------
LOG_MODEL_PROBE = """
import sys
import numpy as np
from sklearn.datasets import load_digits
from pipeline.estimators import MLPClassifier
from pipeline.tracking import Tracker
X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
tracker = Tracker(sys.argv[1], "no-torch", on_error="fail")
tracker.start("run")
tracker.log_model(MLPClassifier(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(X, y), X)
tracker.end()
print("skops.io" in sys.modules, "torch" in sys.modules)
"""


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed here"
)
def test_logging_a_model_does_not_import_pytorch(tmp_path):
    # skops's import walks scikit-learn's packages, one of which imports PyTorch (4 s).
    out = subprocess.run(
        [sys.executable, "-c", LOG_MODEL_PROBE, f"sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert out.split() == ["True", "False"]  # skops was used, PyTorch never imported
