"""MLflow tracking that fails: unreachable at start, silent, killed or hung mid-run; and
secrets (passwords in URLs) that must never reach MLflow params or the terminal.

Every case runs ``python -m pipeline.train`` as a user would (on digits, with the MLP),
against a closed port, a socket that accepts connections and never answers, or a real
``mlflow server`` on 127.0.0.1 that is SIGKILLed or SIGSTOPped once the run shows progress.
Training must finish and write its outputs; the failure must be reported once, naming the
server; ``tracking.on_error=fail`` must stop the stage with a one-line error; and no
failure may stall the stage much longer than ``tracking.timeout``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline import augment, prepare
from pipeline.artifacts import load_model
from pipeline.config import compose_config
from tests.environ import child_environment

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DIGITS = ["data=digits", "augment=none", "model=mlp", "train.use_search=false"]
SECRET = "s3cr3t-Pw-4711"
LONG = 200  # epochs of the runs that lose their server mid-way (a few seconds)
SLACK = 4.0  # seconds on top of the configured timeout: process start, jitter, retries' gaps


ENV = child_environment()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking_faults")
    cfg = compose_config([*paths(root, root), *DIGITS, "tracking=off"])
    prepare.run(cfg)
    augment.run(cfg)
    return root


def paths(data: Path, out: Path) -> list[str]:
    return [
        f"paths.data={data / 'data'}",
        f"paths.models={out / 'models'}",
        f"paths.reports={out / 'reports'}",
    ]


class Run:
    def __init__(self, process: subprocess.Popen, out: Path, started: float) -> None:
        self.process, self.out, self.started = process, out, started
        self.seconds = 0.0

    def wait(self, timeout: float = 300) -> Run:
        self.process.wait(timeout=timeout)
        self.seconds = time.monotonic() - self.started
        return self

    @property
    def returncode(self) -> int:
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return (self.out / "stdout.txt").read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return (self.out / "stderr.txt").read_text(errors="replace")

    def describe(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f} s\n{self.stdout}\n{self.stderr}"


def start_train(data: Path, out: Path, *extra: str, epochs: int = 3) -> Run:
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pipeline.train", *paths(data, out), *DIGITS,
        f"train.epochs={epochs}", "train.early_stopping=false", *extra,
    ]  # fmt: skip
    with open(out / "stdout.txt", "wb") as stdout, open(out / "stderr.txt", "wb") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=stdout, stderr=stderr)
    return Run(process, out, time.monotonic())


def train(data: Path, out: Path, *extra: str, epochs: int = 3) -> Run:
    return start_train(data, out, *extra, epochs=epochs).wait()


def assert_outputs_written(out: Path, epochs: int) -> None:
    model = load_model(out / "models" / "model")
    assert model.n_iter_ == epochs
    history = (out / "reports" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + epochs, history
    assert (out / "models" / "mlflow_run.json").is_file()
    leftovers = [p for p in out.rglob(".*.tmp")]
    assert not leftovers, leftovers


def warnings_in(stderr: str) -> list[str]:
    """The ``warning:`` messages (tqdm's bar ends its updates with a carriage return only,
    so a message may follow the bar on the same line)."""
    return re.findall(r"warning: [^\r\n]*", stderr)


@pytest.fixture(scope="module")
def baseline(data_root, tmp_path_factory) -> dict[int, float]:
    """Seconds a train run takes without tracking, by epochs (process start included)."""
    times = {}
    for epochs in (3, LONG):
        run = train(data_root, tmp_path_factory.mktemp("baseline"), "tracking=off", epochs=epochs)
        assert run.returncode == 0, run.describe()
        times[epochs] = run.seconds
    return times


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        listener.close()


# --- a real mlflow server ----------------------------------------------------------------
class MlflowServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        mlflow_bin = BIN / "mlflow"
        command = [
            str(mlflow_bin) if mlflow_bin.exists() else shutil.which("mlflow"),
            "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
            "--artifacts-destination", str(root / "artifacts"),
        ]  # fmt: skip
        with open(root / "server.log", "wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=root, env=ENV,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/health", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.3)
        self.close()
        raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()}")

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def close(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def get(self, endpoint: str) -> dict:
        with urllib.request.urlopen(f"{self.url}/api/2.0/mlflow/{endpoint}", timeout=5) as r:
            return json.loads(r.read())

    def post(self, endpoint: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{endpoint}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.loads(r.read())

    def runs(self, experiment: str) -> list[dict]:
        try:
            found = self.get(f"experiments/get-by-name?experiment_name={experiment}")
        except urllib.error.HTTPError:
            return []
        body = {"experiment_ids": [found["experiment"]["experiment_id"]]}
        return self.post("runs/search", body).get("runs", [])

    def last_step(self, experiment: str, metric: str = "val_accuracy") -> int:
        steps = [
            m.get("step", 0)
            for run in self.runs(experiment)
            for m in run["data"].get("metrics", [])
            if m["key"] == metric
        ]
        return max(steps, default=0)


class Servers:
    """One mlflow server at a time, shared by the module's tests; ``get()`` starts a new
    one when there is none or the last one was killed."""

    def __init__(self, root: Path) -> None:
        self.root, self.started = root, 0
        self.current: MlflowServer | None = None

    def get(self) -> MlflowServer:
        if self.current is None or self.current.process.poll() is not None:
            root = self.root / f"server{self.started}"
            root.mkdir()
            self.started += 1
            self.current = MlflowServer(root)
        self.current.signal(signal.SIGCONT)
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    holder = Servers(tmp_path_factory.mktemp("mlflow_servers"))
    yield holder
    holder.close()


def run_until_progress(server: MlflowServer, data: Path, out: Path, experiment: str, *extra: str):
    """Start train against ``server``; return it once MLflow holds its third epoch."""
    args = ["tracking=server", f"tracking.uri={server.url}", f"tracking.experiment={experiment}"]
    run = start_train(data, out, *args, *extra, epochs=LONG)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.process.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            if server.last_step(experiment) >= 3:
                return run
        time.sleep(0.1)
    run.process.kill()
    raise AssertionError(f"no progress seen in MLflow\n{run.wait().describe()}")


# --- unreachable at start ----------------------------------------------------------------
def test_unreachable_server_at_start_warns_and_training_finishes(data_root, baseline, tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    run = train(data_root, tmp_path, "tracking=server", f"tracking.uri={uri}", "tracking.timeout=3")
    assert run.returncode == 0, run.describe()
    assert_outputs_written(tmp_path, 3)
    assert json.loads((tmp_path / "models" / "mlflow_run.json").read_text())["run_id"] is None
    warnings = warnings_in(run.stderr)
    assert len(warnings) == 1, run.describe()
    assert uri in warnings[0] and "continuing without tracking" in warnings[0], warnings
    assert "Traceback" not in run.stderr, run.describe()
    assert run.seconds <= baseline[3] + 3 + SLACK, run.describe()


def test_unreachable_server_with_on_error_fail_stops_the_stage(data_root, baseline, tmp_path):
    uri = f"http://127.0.0.1:{closed_port()}"
    run = train(
        data_root, tmp_path, "tracking=server", f"tracking.uri={uri}", "tracking.timeout=3",
        "tracking.on_error=fail",
    )  # fmt: skip
    assert run.returncode == 1, run.describe()
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "MLflow tracking failed" in errors[0], run.describe()
    assert uri in errors[0], errors
    assert "Traceback" not in run.stderr, run.describe()
    assert not (tmp_path / "models" / "model.npz").exists()  # stopped before training
    assert run.seconds <= baseline[3] + 3 + SLACK, run.describe()


def test_silent_server_at_start_stalls_no_longer_than_the_timeout(data_root, baseline, tmp_path):
    timeout = 5
    with silent_server() as uri:
        run = train(
            data_root, tmp_path, "tracking=server", f"tracking.uri={uri}",
            f"tracking.timeout={timeout}",
        )  # fmt: skip
    assert run.returncode == 0, run.describe()
    assert_outputs_written(tmp_path, 3)
    assert len(warnings_in(run.stderr)) == 1 and uri in run.stderr, run.describe()
    stall = run.seconds - baseline[3]
    assert stall <= timeout + SLACK, f"stalled {stall:.1f} s with timeout={timeout}\n" + (
        run.describe()
    )


# --- secrets -------------------------------------------------------------------------------
def with_password(url: str, user: str = "alice") -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{SECRET}@{rest}"


def test_password_in_unreachable_tracking_uri_is_masked_on_stderr(data_root, tmp_path):
    port = closed_port()
    uri = with_password(f"http://127.0.0.1:{port}")
    run = train(data_root, tmp_path, "tracking=server", f"tracking.uri={uri}", "tracking.timeout=3")
    assert run.returncode == 0, run.describe()
    warnings = warnings_in(run.stderr)
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0], run.describe()
    assert SECRET not in run.stdout + run.stderr, run.describe()


@pytest.fixture(scope="module")
def secret_run(data_root, tmp_path_factory, servers):
    """train with a password in the tracking URI (MLflow sends it as basic auth, which a
    server without auth ignores) and one in the (unused) search storage URL."""
    out = tmp_path_factory.mktemp("secrets")
    server = servers.get()
    storage = with_password("postgresql+psycopg2://127.0.0.1:9/optuna", user="nndl")
    run = train(
        data_root, out, "tracking=server", f"tracking.uri={with_password(server.url)}",
        "tracking.experiment=secrets", f"search.storage={storage}",
    )  # fmt: skip
    assert run.returncode == 0, run.describe()
    return {"run": run, "runs": server.runs("secrets"), "port": server.port, "out": out}


def test_passwords_never_reach_mlflow_params(secret_run):
    runs = secret_run["runs"]
    assert len(runs) == 1, runs
    data = runs[0]["data"]
    params = {p["key"]: p["value"] for p in data["params"]}
    port = secret_run["port"]
    assert params["tracking.uri"] == f"http://alice:***@127.0.0.1:{port}", params
    assert params["search.storage"] == "postgresql+psycopg2://nndl:***@127.0.0.1:9/optuna"
    texts = [*params.values(), *(t["value"] for t in data.get("tags", []))]
    assert not [text for text in texts if SECRET in text]


def test_password_in_tracking_uri_is_never_printed(secret_run):
    run = secret_run["run"]
    printed = run.stdout + run.stderr
    assert SECRET not in printed, [line for line in printed.splitlines() if SECRET in line]


def test_password_in_tracking_uri_is_not_written_to_outputs(secret_run):
    out = secret_run["out"]
    written = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".csv")]
    leaking = [str(p) for p in written if SECRET in p.read_text(errors="replace")]
    assert not leaking, leaking


# --- going away mid-run (the hung server first: the killed one is gone after) -------
def test_server_hung_mid_run_stalls_no_longer_than_the_timeout(
    data_root, baseline, tmp_path, servers
):
    server, timeout = servers.get(), 5
    run = run_until_progress(server, data_root, tmp_path, "hung", f"tracking.timeout={timeout}")
    server.signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        run.wait()
    finally:
        server.signal(signal.SIGCONT)
    assert run.returncode == 0, run.describe()
    assert_outputs_written(tmp_path, LONG)
    assert len(warnings_in(run.stderr)) == 1, run.describe()
    after_stop = run.started + run.seconds - stopped_at
    bound = baseline[LONG] + timeout + SLACK
    assert after_stop <= bound, (
        f"{after_stop:.1f} s after the server hung (bound {bound:.1f})\n" + (run.describe())
    )


def test_server_killed_mid_run_training_finishes(data_root, baseline, tmp_path, servers):
    server = servers.get()
    run = run_until_progress(server, data_root, tmp_path, "killed", "tracking.timeout=5")
    server.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    run.wait()
    assert run.returncode == 0, run.describe()
    assert_outputs_written(tmp_path, LONG)
    warnings = warnings_in(run.stderr)
    assert len(warnings) == 1 and server.url in warnings[0], run.describe()
    assert "Traceback" not in run.stderr, run.describe()
    after_kill = run.started + run.seconds - killed_at
    assert after_kill <= baseline[LONG] + 5 + SLACK, f"{after_kill:.1f} s after the kill"


def postgres_url() -> str | None:
    return os.environ.get("POSTGRES_URL")


@pytest.mark.skipif(postgres_url() is None, reason="POSTGRES_URL not set (CI sets it)")
def test_search_storage_password_is_masked(data_root, tmp_path):
    """A real PostgreSQL storage URL with its password: the search logs it masked."""
    import optuna
    from sqlalchemy.engine import make_url

    storage = postgres_url()
    password = make_url(storage).password
    assert password, "POSTGRES_URL has no password to mask"
    plain = f":{password}@"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = f"secrets-{os.getpid()}-{int(time.time())}"
    command = [
        sys.executable, "-m", "pipeline.search", *paths(data_root, tmp_path), *DIGITS[:3],
        f"tracking.uri={tracking}", "tracking.experiment=secrets", f"search.storage={storage}",
        f"search.study_name={study}", "search.n_trials=1", "search.workers=1",
        "search.epochs=1", "search.max_train_samples=200",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
        )
    finally:
        with contextlib.suppress(Exception):
            optuna.delete_study(study_name=study, storage=storage)
    assert result.returncode == 0, result.stderr
    assert plain not in result.stdout + result.stderr
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("secrets")
    runs = client.search_runs([experiment.experiment_id])
    assert runs
    for found in runs:
        texts = [*found.data.params.values(), *found.data.tags.values()]
        assert not [text for text in texts if plain in text], found.info.run_name
    parent = next(r for r in runs if r.data.tags.get("dvc_stage") == "search")
    assert ":***@" in parent.data.params["search.storage"]


# --- a training process killed: its run must not stay RUNNING forever ----------------------
def test_run_of_a_killed_train_is_closed_by_the_next_stage(data_root, tmp_path):
    """SIGKILL leaves the run RUNNING (no atexit runs); the next train or search calls
    ``Tracker.close_stale_runs``, which marks it KILLED: its owner pid is gone."""
    from pipeline.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = start_train(
        data_root, tmp_path, f"tracking.uri={uri}", "tracking.experiment=killed", epochs=LONG
    )
    client = MlflowClient(uri)
    deadline = time.monotonic() + 120
    run_id = None
    while time.monotonic() < deadline and run.process.poll() is None and run_id is None:
        with contextlib.suppress(Exception):
            experiment = client.get_experiment_by_name("killed")
            for found in client.search_runs([experiment.experiment_id]):
                if found.info.status == "RUNNING" and found.data.params:  # training began
                    run_id = found.info.run_id
        time.sleep(0.05)
    # Frozen, the training cannot end its run between this check and the kill.
    run.process.send_signal(signal.SIGSTOP)
    running = run_id is not None and client.get_run(run_id).info.status == "RUNNING"
    run.process.kill()
    run.wait()
    assert running, run.describe()
    assert Tracker(uri, "killed").close_stale_runs() == [run_id]
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED" and "is gone" in killed.data.tags["nndl.closed_because"]
