"""Tracking against a real `mlflow server` on 127.0.0.1, checked through its REST API."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest

from pipeline import augment, evaluate, prepare, train
from pipeline.artifacts import load_model
from pipeline.config import compose_config
from tests.conftest import stage_overrides


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(mlflow_bin) if mlflow_bin.exists() else shutil.which("mlflow"),
        "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    with open(root / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()}")
    else:
        proc.kill()
        raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()}")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_train_and_evaluate_log_to_a_tracking_server(mlflow_server, tmp_path):
    timeout = os.environ.get("CI_MLFLOW_TIMEOUT", "30")
    cfg = compose_config(
        stage_overrides(
            tmp_path, "data=digits", "augment=none", "model=mlp", "train.epochs=3",
            "tracking=server", f"tracking.uri={mlflow_server}", "tracking.experiment=server-test",
            "train.use_search=false", f"tracking.timeout={timeout}",
        )
    )  # fmt: skip
    prepare.run(cfg)
    augment.run(cfg)
    run_id = train.run(cfg)["run_id"]
    evaluate.run(cfg)

    run = get_json(f"{mlflow_server}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert run["info"]["status"] == "FINISHED"
    experiment = get_json(
        f"{mlflow_server}/api/2.0/mlflow/experiments/get?experiment_id={run['info']['experiment_id']}"
    )["experiment"]
    kind = {t["key"]: t["value"] for t in experiment.get("tags", [])}.get("mlflow.experimentKind")
    assert kind == "custom_model_development"  # MLflow 3's UI opens on the runs
    assert params["model.name"] == "mlp" and params["train.epochs"] == "3"
    assert 0.8 <= metrics["test_accuracy"] <= 1.0 and "val_accuracy" in metrics
    history = get_json(
        f"{mlflow_server}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=train_loss"
    )["metrics"]
    assert sorted(m["step"] for m in history) == [1, 2, 3]
    artifacts = get_json(f"{mlflow_server}/api/2.0/mlflow/artifacts/list?run_id={run_id}")
    paths = {f["path"] for f in artifacts.get("files", [])}
    assert {"plots", "reports", "weights"} <= paths
    # MLflow 3 keeps models beside the run's artifacts ("logged models"), linked to the run.
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert model.metadata.run_id == run_id  # the model is the run's output
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model"))
    files = [p.name for p in local.rglob("*") if p.is_file()]
    assert "MLmodel" in files and not [f for f in files if f.endswith(".py")], files
    X = np.zeros((2, 64), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(X), load_model(cfg.paths.model).predict(X))
