"""A :class:`~pipeline.tracking.Tracker` in a process of its own, beside the stage.

Importing MLflow's client and store is about 3 s of Python (some 1,900 modules). In the
stage's own process that time came before the first request: train's first epoch waited
for it, and evaluate, 4 s of work without tracking, took 8. A thread does not hide it: the
import holds the interpreter lock that the stage's own Python needs. :class:`TrackerProcess`
starts ``python -m pipeline.tracking_process`` as the stage starts; the worker imports MLflow
on the other core while the stage reads its data, trains or plots, and makes the stage's
tracking calls in the order the stage made them. The stage waits only where it needs the
outcome: a model's registration, and the end of the run.

- Protocol: one JSON object per line. Requests go to the worker's stdin (the first carries
  the settings: a URI with a password never appears on a command line); replies come back
  on a pipe of their own, one per request and in order, ``{"value": ...}`` or
  ``{"error": "..."}``. Arrays travel as lists with their dtype; nothing is pickled. The
  worker's stdout and stderr are the stage's, so MLflow's and the tracker's messages appear
  where they always did.
- Failures keep ``tracking.on_error``: the worker's tracker warns (one line) and goes on
  without tracking, or fails. A failure under ``fail`` is raised in the stage at its next
  call to the tracker, and under ``fail`` the stage waits for the run to start, so that a
  store it cannot open stops it before training. A worker that dies is a store that failed.
- The worker runs in a session of its own: Ctrl-C reaches the stage only, which then ends
  the run as KILLED through the worker. When the stage's process ends without ending the run
  (killed, or failed outside training) the worker's input closes and it exits without
  touching the run; the next stage closes it (:meth:`Tracker.close_stale_runs`: a run's
  owner tags name the stage's process, not the worker).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.tracking import (
    NullTracker,
    Registration,
    Tracker,
    TrackingError,
    check_on_error,
    mask_secrets,
    tracker_settings,
)

# The Tracker methods a stage may call through the worker.
WORKER_CALLS = frozenset(
    {
        "start",
        "close_stale_runs",
        "log_config",
        "log_metrics",
        "log_epoch",
        "log_artifact",
        "log_saved_model",
        "register_champion",
        "end",
    }
)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CLOSE_SECONDS = 10.0  # how long a stage waits for the worker to exit after its last reply


# --- the wire format ---------------------------------------------------------------------------
def _to_json(value: Any) -> Any:
    """``json.dumps``'s fallback: NumPy scalars and arrays, paths, dataclasses."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} cannot be sent to the tracking process")


def _from_json(obj: dict) -> Any:
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    return obj


def encode(message: dict) -> bytes:
    return (json.dumps(message, default=_to_json) + "\n").encode()


def decode(line: bytes) -> dict:
    return json.loads(line, object_hook=_from_json)


# --- the stage's side --------------------------------------------------------------------------
class TrackerProcess:
    """The tracker of a stage when tracking is on: the :class:`Tracker` calls that train and
    evaluate make, sent to a worker process and run there in order.

    Calls return at once, except :meth:`register_champion` (its outcome) and :meth:`end`
    (the run's last state: :attr:`run_id`, :attr:`active`), and :meth:`start` under
    ``on_error=fail``. With ``for_model`` the worker also imports what logging a model needs.
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        on_error: str = "warn",
        timeout: float = 10,
        for_model: bool = False,
    ) -> None:
        check_on_error(on_error)
        self.uri, self.experiment, self.on_error = uri, experiment, on_error
        self.run_id: str | None = None
        self.model_id: str | None = None
        self.active = True
        self._waiting: deque[str] = deque()  # the calls whose replies have not come yet
        self._received = b""
        try:
            self._process, self._replies = _start_worker()
        except OSError as err:  # no interpreter to run it, no processes or pipes left
            self._stopped = True
            self._fail(f"MLflow tracking failed while starting its process ({uri}): {err}")
            return
        self._stopped = False
        atexit.register(self._abandon)
        self._send("open", uri=uri, experiment=experiment, on_error=on_error, timeout=timeout,
                   owner_pid=os.getpid(), for_model=for_model)  # fmt: skip

    # --- the calls -------------------------------------------------------------------------
    def start(self, run_name: str, run_id: str | None = None, tags: dict | None = None) -> None:
        self._send("start", run_name, run_id, tags)
        if self.on_error == "fail":
            self._wait()

    def close_stale_runs(self) -> None:
        self._send("close_stale_runs")

    def log_config(self, cfg) -> None:
        from omegaconf import DictConfig, OmegaConf

        data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        self._send("log_config", data)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._send("log_metrics", metrics, step)

    def epoch_logger(self) -> Callable:
        return lambda info: self.log_epoch(info.metrics(), info.epoch)

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        self._send("log_epoch", metrics, epoch)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._send("log_artifact", str(path), artifact_path)

    def log_saved_model(self, path: str | os.PathLike, X_example: np.ndarray) -> None:
        self._send("log_saved_model", str(path), np.asarray(X_example))

    def register_champion(
        self,
        name: str,
        metric: str,
        value: float,
        test_checksum: str,
        greater_is_better: bool = True,
    ) -> Registration | None:
        if not self._send("register_champion", name, metric, value, test_checksum,
                          greater_is_better):  # fmt: skip
            return None
        registration = self._wait()
        return Registration(**registration) if registration and self.active else None

    def end(self, status: str = "FINISHED") -> None:
        """End the run with ``status``, wait for every call, and let the worker go."""
        self._send("end", status)
        if self._send("close"):
            state = self._wait()
            if state is not None:
                self.run_id, self.model_id = state["run_id"], state["model_id"]
                self.active = self.active and state["active"]
        self._stop()

    # --- requests and replies --------------------------------------------------------------
    def _send(self, call: str, *args, **kwargs) -> bool:
        """Queue ``call`` in the worker (False when tracking has stopped); a failure that
        has come back meanwhile is handled first."""
        if not self.active:
            return False
        self._read(block=False)
        if not self.active:
            return False
        try:
            self._process.stdin.write(encode({"call": call, "args": args, "kwargs": kwargs}))
            self._process.stdin.flush()
        except OSError:  # BrokenPipeError: the worker is gone
            self._lost(call)
            return False
        self._waiting.append(call)
        return True

    def _wait(self) -> Any:
        """Wait for every reply; the last call's value (None when tracking stopped)."""
        return self._read(block=True)

    def _read(self, block: bool) -> Any:
        value = None
        while self._waiting and self.active:
            line, newline, rest = self._received.partition(b"\n")
            if not newline:
                if not block and not select.select([self._replies], [], [], 0)[0]:
                    break
                chunk = os.read(self._replies, 1 << 16)
                if not chunk:
                    self._lost(self._waiting[0])
                    break
                self._received += chunk
                continue
            self._received = rest
            self._waiting.popleft()
            reply = decode(line)
            if "error" in reply:
                self._fail(reply["error"])
            value = reply.get("value")
        return value

    def _lost(self, call: str) -> None:
        code = self._process.poll()
        self._fail(
            f"MLflow tracking failed during {call} ({self.uri}): the tracking process ended"
            f"{'' if code is None else f' (exit status {code})'}"
        )

    def _fail(self, message: str) -> None:
        """Stop tracking; raise or warn by ``on_error``."""
        self.active = False
        self._stop()
        message = mask_secrets(message)
        if self.on_error == "fail":
            raise TrackingError(message)
        print(f"warning: {message}; continuing without tracking", file=sys.stderr)

    # --- the worker's end ------------------------------------------------------------------
    def _stop(self) -> None:
        """Close the worker's input (it exits after its current call) and wait for it."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self._abandon)
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        with contextlib.suppress(OSError):
            os.close(self._replies)

    def _abandon(self) -> None:
        """At exit without :meth:`end`: the stage failed outside training. The worker goes
        at once; a run it started stays RUNNING until the next stage closes it."""
        self._process.kill()
        self._stop()


def _start_worker() -> tuple[subprocess.Popen, int]:
    """The worker process, and the read end of the pipe its replies come by."""
    read_end, write_end = os.pipe()
    path = os.environ.get("PYTHONPATH")
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), *([path] if path else [])]),
    }
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", __name__, str(write_end)],
            stdin=subprocess.PIPE,
            pass_fds=(write_end,),
            start_new_session=True,  # Ctrl-C goes to the stage; the stage ends the run
            env=environment,
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return worker, read_end


def tracker_process_from_config(cfg, for_model: bool = False) -> TrackerProcess | NullTracker:
    """The tracker for a stage's process: :class:`TrackerProcess`, or a
    :class:`NullTracker` when tracking is off."""
    settings = tracker_settings(cfg)
    if settings is None:
        return NullTracker()
    return TrackerProcess(**settings, for_model=for_model)


# --- the worker's side -------------------------------------------------------------------------
def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer requests until ``close`` or the end of the input (the stage is gone)."""
    tracker: Tracker | None = None
    for line in requests:
        request = decode(line)
        call, args, kwargs = request["call"], request["args"], request["kwargs"]
        reply: dict[str, Any] = {"value": None}
        try:
            if call == "open":
                for_model = kwargs.pop("for_model")
                tracker = Tracker(**kwargs)
                tracker.preload(for_model)
            elif call == "close":
                reply["value"] = {
                    "run_id": tracker.run_id,
                    "active": tracker.active,
                    "model_id": tracker.model_id,
                }
            elif call in WORKER_CALLS:
                reply["value"] = getattr(tracker, call)(*args, **kwargs)
            else:
                raise ValueError(f"unknown call {call!r}")
        except TrackingError as err:
            reply = {"error": str(err)}
        except Exception as err:  # a bug here, not the store: the stage decides by on_error
            uri = tracker.uri if tracker is not None else "?"
            reply = {"error": f"MLflow tracking failed in {call} ({uri}): "
                              f"{type(err).__name__}: {err}"}  # fmt: skip
        replies.write(encode(reply))
        replies.flush()
        if call == "close":
            return


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the stage ends the run on Ctrl-C
    with os.fdopen(int(argv[0]), "wb") as replies:
        serve(sys.stdin.buffer, replies)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    # Without the interpreter's teardown: freeing MLflow's modules one by one takes a second
    # or more (see pipeline.config.quick_exit), and the stage waits for this process to end.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
