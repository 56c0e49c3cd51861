"""The tracker in a worker process (pipeline.tracking_process): the calls of train and
evaluate reach the store in order, failures keep ``on_error``, the run belongs to the
stage's process, no secret on a command line, and no worker outlives its stage."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.datasets import load_digits

from pipeline.artifacts import load_model, save_model
from pipeline.estimators import MLPClassifier
from pipeline.tracking import PID_TAG, Registration, Tracker, TrackingError
from pipeline.tracking_process import TrackerProcess, decode, encode

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-Pw"


class Epoch:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def metrics(self) -> dict:
        return {"train_loss": np.float32(1.0 / self.epoch), "val_accuracy": None}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    fitted = MLPClassifier(hidden_layer_sizes=(16,), epochs=2, random_state=0).fit(X, y)
    return save_model(fitted, tmp_path_factory.mktemp("model") / "model"), X[:5]


def test_the_wire_format_round_trips_arrays_numpy_scalars_and_nan():
    message = {
        "args": [np.arange(6, dtype=np.float32).reshape(2, 3), np.int64(3), Path("/a/b")],
        "kwargs": {"x": float("nan"), "r": Registration("m", "1", "1", True, "first")},
    }
    back = decode(encode(message))
    array = back["args"][0]
    assert array.dtype == np.float32 and array.shape == (2, 3)
    np.testing.assert_array_equal(array, message["args"][0])
    assert back["args"][1:] == [3, "/a/b"] and np.isnan(back["kwargs"]["x"])
    assert back["kwargs"]["r"] == {"name": "m", "version": "1", "champion": "1",
                                   "promoted": True, "reason": "first"}  # fmt: skip


def test_a_run_logged_through_the_worker_holds_what_the_stage_sent(tmp_path, saved_model):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model_path, example = saved_model
    tracker = TrackerProcess(uri, "process", for_model=True)
    worker = tracker._process
    tracker.start("run", tags={"storage": f"postgresql://u:{SECRET}@h/db"})
    tracker.close_stale_runs()
    tracker.log_config({"tracking": {"uri": f"http://a:{SECRET}@h:1"}, "seed": 3})
    log_epoch = tracker.epoch_logger()
    for epoch in (1, 2, 3):
        log_epoch(Epoch(epoch))
    tracker.log_metrics({"best": np.float64(0.5), "nan": float("nan")})
    tracker.log_artifact(Path(model_path).with_suffix(".json"), "weights")
    tracker.log_saved_model(model_path, example)
    registration = tracker.register_champion("nndl-mlp-digits", "test_accuracy", 0.9, "split")
    tracker.end()

    assert worker.returncode == 0  # the worker has exited
    assert registration == Registration("nndl-mlp-digits", "1", "1", True,
                                        "first registered version")  # fmt: skip
    client = MlflowClient(uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and tracker.active
    assert run.data.tags[PID_TAG] == str(os.getpid())  # the stage's process, not the worker
    assert run.data.params == {"tracking.uri": "http://a:***@h:1", "seed": "3"}
    assert run.data.tags["storage"] == "postgresql://u:***@h/db"
    assert run.data.metrics["best"] == 0.5 and "nan" not in run.data.metrics
    history = client.get_metric_history(tracker.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert [a.path for a in client.list_artifacts(tracker.run_id, "weights")] == [
        "weights/model.json"
    ]
    assert tracker.model_id is not None
    import mlflow.sklearn

    logged = mlflow.sklearn.load_model(client.get_logged_model(tracker.model_id).artifact_location)
    np.testing.assert_array_equal(logged.predict(example), load_model(model_path).predict(example))


def test_on_error_fail_stops_the_start_with_a_masked_error(tmp_path):
    port = closed_port()
    tracker = TrackerProcess(f"http://u:{SECRET}@127.0.0.1:{port}", "x", "fail", timeout=3)
    worker = tracker._process
    with pytest.raises(TrackingError, match="starting the run.*refused") as raised:
        tracker.start("run")
    assert SECRET not in str(raised.value) and f":***@127.0.0.1:{port}" in str(raised.value)
    assert not tracker.active and gone(worker.pid, within=10)
    tracker.log_metrics({"a": 1.0})  # no-ops now
    tracker.end()


def test_on_error_warn_warns_once_and_the_stage_goes_on(capfd):
    uri = f"http://u:{SECRET}@127.0.0.1:{closed_port()}"
    tracker = TrackerProcess(uri, "x", timeout=3)
    tracker.start("run")
    tracker.log_metrics({"a": 1.0})
    tracker.epoch_logger()(Epoch(1))
    tracker.end()
    err = capfd.readouterr().err
    assert err.count("warning:") == 1 and "continuing without tracking" in err, err
    assert SECRET not in err and "Traceback" not in err
    assert not tracker.active and tracker.run_id is None


@pytest.mark.parametrize("on_error", ["warn", "fail"])
def test_a_worker_that_dies_is_a_store_that_failed(tmp_path, capsys, on_error):
    tracker = TrackerProcess(f"sqlite:///{tmp_path / 'mlflow.db'}", "x", on_error)
    tracker._process.kill()
    tracker._process.wait()
    if on_error == "fail":
        with pytest.raises(TrackingError, match=r"tracking process ended \(exit status -9\)"):
            tracker.log_metrics({"a": 1.0})
    else:
        tracker.log_metrics({"a": 1.0})
        tracker.end()
        assert capsys.readouterr().err.count("warning:") == 1
    assert not tracker.active


def test_no_secret_on_the_command_line_and_no_ctrl_c_in_the_worker(tmp_path):
    tracker = TrackerProcess(f"postgresql://u:{SECRET}@127.0.0.1:{closed_port()}/db", "x")
    pid = tracker._process.pid
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert SECRET.encode() not in command_line
        assert os.getsid(pid) != os.getsid(0)  # a session of its own: no terminal signals
    finally:
        tracker.end()


STAGE_KILLED = """
import os, signal, sys
from pipeline.tracking_process import TrackerProcess
tracker = TrackerProcess(sys.argv[1], "killed")
tracker.start("run")
tracker.log_metrics({"a": 1.0})
tracker._wait()
print(tracker._process.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_stage_leaves_no_worker_and_its_run_is_closed_as_stale(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    stage = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STAGE_KILLED), uri],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert stage.returncode == -signal.SIGKILL, stage.stderr
    assert gone(int(stage.stdout.split()[0]), within=10)
    run = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("killed")
                                         .experiment_id])[0]  # fmt: skip
    assert run.info.status == "RUNNING" and run.data.metrics == {"a": 1.0}
    assert Tracker(uri, "killed").close_stale_runs() == [run.info.run_id]


STAGE_FAILED = """
import sys
from pipeline.tracking_process import TrackerProcess
tracker = TrackerProcess(sys.argv[1], "failed")
print(tracker._process.pid, flush=True)
raise SystemExit("error: bad input")
"""


def test_a_stage_that_fails_before_its_run_starts_stops_the_worker_at_once(tmp_path):
    stage = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STAGE_FAILED), f"sqlite:///{tmp_path / 'm.db'}"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert stage.returncode == 1 and stage.stderr.strip() == "error: bad input"
    assert gone(int(stage.stdout.split()[0]), within=1)
    assert list(tmp_path.iterdir()) == []  # no store was created


def test_the_stage_learns_the_run_when_it_ends(tmp_path):
    tracker = TrackerProcess(f"sqlite:///{tmp_path / 'mlflow.db'}", "x")
    tracker.start("run")
    assert tracker.run_id is None  # not waited for
    tracker.end()
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and tracker.active


@pytest.mark.parametrize("on_error", ["warn", "fail"])
def test_a_worker_that_cannot_start_is_a_store_that_failed(monkeypatch, capsys, on_error):
    def no_processes(*args, **kwargs):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(subprocess, "Popen", no_processes)
    uri = f"http://u:{SECRET}@127.0.0.1:1"
    if on_error == "fail":
        with pytest.raises(TrackingError, match="starting its process.*unavailable") as raised:
            TrackerProcess(uri, "x", on_error)
        assert SECRET not in str(raised.value)
        return
    tracker = TrackerProcess(uri, "x", on_error)
    tracker.start("run")
    tracker.end()
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "unavailable" in err and SECRET not in err
    assert not tracker.active and tracker.run_id is None
