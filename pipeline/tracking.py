"""MLflow adapter: the one module (with the search stage) that talks to MLflow.

A :class:`Tracker` logs one stage into an MLflow run: the composed config flattened as
params, per-epoch metrics (step = epoch), final metrics, tags, artifacts and the model. The
train stage starts the run and records its id in ``paths.run``; evaluate resumes the same
run, so one run holds the whole story of a model.

When tracking is off (``tracking=off``) every method is a no-op. When the tracking store
fails (server down, bad URI) the ``tracking.on_error`` setting decides: ``warn`` reports it
once on stderr and the stage goes on without tracking; ``fail`` raises
:class:`TrackingError`. Requests to a server give up after ``tracking.timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from pipeline.config import flatten

# Every class of ours that a fitted estimator holds: skops refuses to load any type not
# listed here, so the list is what we trust (see README, "Trust model").
SKOPS_TRUSTED_TYPES = [
    "pipeline.estimators.MLPClassifier",
    "pipeline.estimators.CNNClassifier",
    "pipeline.nn.network.Network",
    "pipeline.nn.regularizers.Regularizer",
    *[f"pipeline.nn.activations.{name}" for name in ("Sigmoid", "Tanh", "ReLU", "Identity")],
    "pipeline.nn.activations.Softmax",
    *[
        f"pipeline.nn.costs.{name}"
        for name in ("QuadraticCost", "CrossEntropyCost", "LogLikelihoodCost")
    ],
    *[
        f"pipeline.nn.layers.{name}"
        for name in ("Dense", "Conv2D", "MaxPool2D", "Dropout", "Flatten")
    ],
]
MAX_PARAM_LENGTH = 6000
_SECRET_IN_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+):[^@/\s]+@", re.I)


class TrackingError(RuntimeError):
    """The tracking store failed and ``tracking.on_error`` is ``fail``."""


def mask_secrets(value: Any) -> Any:
    """Hide passwords in URLs: ``postgresql://u:pw@host/db`` -> ``postgresql://u:***@host/db``."""
    if isinstance(value, str):
        return _SECRET_IN_URL.sub(r"\g<scheme>\g<user>:***@", value)
    return value


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class Tracker:
    """One stage's view of one MLflow run; build it with :func:`tracker_from_config`."""

    def __init__(self, uri: str, experiment: str, on_error: str = "warn", timeout: float = 10):
        if on_error not in ("warn", "fail"):
            raise ValueError(f"tracking.on_error must be 'warn' or 'fail'; got {on_error!r}")
        self.uri = uri
        self.experiment = experiment
        self.on_error = on_error
        self.timeout = timeout
        self.run_id: str | None = None
        self.active = True

    # --- failure policy ------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Apply ``on_error`` to a failure of the MLflow calls in the block. Callers return
        early when ``self.active`` is False (tracking off, or given up after a warning)."""
        try:
            yield
        except Exception as err:  # MLflow raises many types; all mean "the store failed"
            message = mask_secrets(f"MLflow tracking failed while {what} ({self.uri}): {err}")
            if self.on_error == "fail":
                raise TrackingError(message) from err
            print(f"warning: {message}; continuing without tracking", file=sys.stderr)
            self.active = False
            self._end_quietly()

    def _end_quietly(self) -> None:
        """Forget the active run without asking the failed store again (a hung server would
        cost another timeout); the run stays as the store last saw it."""
        from mlflow.tracking import fluent

        with contextlib.suppress(Exception):
            fluent._active_run_stack.get().clear()

    # --- runs ----------------------------------------------------------------------------
    def start(self, run_name: str, run_id: str | None = None, tags: dict | None = None) -> None:
        """Start a new run (or resume ``run_id``) in the configured experiment."""
        if not self.active:
            return
        import mlflow

        # One attempt per request, each given up after tracking.timeout seconds.
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(self.timeout))
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        with self._guard("starting the run"):
            mlflow.set_tracking_uri(self.client_uri())
            experiment = mlflow.set_experiment(self.experiment)
            run = mlflow.start_run(
                run_id=run_id,
                run_name=None if run_id else run_name,
                experiment_id=None if run_id else experiment.experiment_id,
            )
            self.run_id = run.info.run_id
            mlflow.set_tags({k: mask_secrets(v) for k, v in (tags or {}).items()})

    def client_uri(self) -> str:
        """The URI MLflow is given. A password in an http(s) URI moves to MLflow's own
        variables, so that MLflow never prints it ("View run ... at <URI>")."""
        match = re.match(r"(https?://)([^:/@\s]+):([^@/\s]+)@(.*)", self.uri, re.I)
        if not match:
            return self.uri
        scheme, user, password, rest = match.groups()
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
        return f"{scheme}{rest}"

    def end(self, status: str = "FINISHED") -> None:
        if not self.active:
            return
        import mlflow

        with self._guard("ending the run"):
            mlflow.end_run(status=status)

    # --- logging -------------------------------------------------------------------------
    def log_config(self, cfg: DictConfig) -> None:
        """The composed config, flattened (``train.learning_rate``), secrets masked."""
        if not self.active:
            return
        import mlflow

        params = {}
        for key, value in flatten(cfg).items():
            text = str(mask_secrets(value))
            params[key] = text if len(text) <= MAX_PARAM_LENGTH else text[:MAX_PARAM_LENGTH]
        with self._guard("logging params"):
            existing = mlflow.get_run(self.run_id).data.params
            mlflow.log_params({k: v for k, v in params.items() if k not in existing})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self.active:
            return
        import mlflow

        finite = {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}
        with self._guard("logging metrics"):
            mlflow.log_metrics(finite, step=step)

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if not self.active:
            return
        import mlflow

        with self._guard(f"logging {path}"):
            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path)

    def log_model(self, estimator, X_example: np.ndarray) -> None:
        """The estimator as an MLflow sklearn model: skops format, our types trusted
        explicitly, a signature, an input example and explicit pip requirements (no
        inference), with our package shipped as code."""
        if not self.active:
            return
        import mlflow
        import scipy
        import sklearn
        import skops
        from mlflow.models import infer_signature

        example = X_example[:5]
        requirements = [
            f"numpy=={np.__version__}",
            f"scipy=={scipy.__version__}",
            f"scikit-learn=={sklearn.__version__}",
            f"skops=={skops.__version__}",
        ]
        with self._guard("logging the model"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlflow.sklearn.log_model(
                estimator,
                name="model",
                serialization_format="skops",
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                signature=infer_signature(example, estimator.predict(example)),
                input_example=example,
                pip_requirements=requirements,
                code_paths=[str(Path(__file__).resolve().parent)],
            )

    def epoch_logger(self) -> Callable:
        """An estimator callback logging each epoch's figures with step = epoch."""

        def log_epoch(info) -> None:
            self.log_metrics(info.metrics(), step=info.epoch)

        return log_epoch

    # --- nested runs (search trials) ---------------------------------------------------------
    # Trials may run in several processes at once, so they go through MlflowClient with
    # explicit run ids rather than the fluent API's per-process "active run".
    def start_child(self, parent_run_id: str, name: str, params: dict) -> str | None:
        """A run nested under ``parent_run_id``; returns its id (None when not tracking)."""
        if not self.active:
            return None
        from mlflow.tracking import MlflowClient

        child_id = None
        with self._guard(f"starting {name}"):
            client = MlflowClient(tracking_uri=self.client_uri())
            parent = client.get_run(parent_run_id)
            child = client.create_run(
                parent.info.experiment_id,
                run_name=name,
                tags={"mlflow.parentRunId": parent_run_id},
            )
            child_id = child.info.run_id
            client.log_batch(
                child_id,
                params=[mlflow_param(k, mask_secrets(v)) for k, v in params.items()],
            )
        return child_id

    def log_child_metrics(self, run_id: str | None, metrics: dict, step: int) -> None:
        if not self.active:
            return
        from mlflow.tracking import MlflowClient

        if run_id is None:
            return
        with self._guard("logging trial metrics"):
            client = MlflowClient(tracking_uri=self.client_uri())
            for key, value in metrics.items():
                if value is not None and np.isfinite(value):
                    client.log_metric(run_id, key, float(value), step=step)

    def end_child(self, run_id: str | None, status: str, tags: dict) -> None:
        if not self.active:
            return
        from mlflow.tracking import MlflowClient

        if run_id is None:
            return
        with self._guard("ending a trial run"):
            client = MlflowClient(tracking_uri=self.client_uri())
            for key, value in tags.items():
                client.set_tag(run_id, key, str(value))
            client.set_terminated(run_id, status=status)


def mlflow_param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, str(value)[:MAX_PARAM_LENGTH])


class NullTracker(Tracker):
    """Tracking switched off: every call returns at once."""

    def __init__(self) -> None:
        super().__init__(uri="", experiment="", on_error="warn")
        self.active = False


def tracker_from_config(cfg: DictConfig) -> Tracker:
    """The tracker the ``tracking`` config group asks for."""
    t = cfg.tracking
    if not t.enabled:
        return NullTracker()
    if not t.uri:
        raise ValueError("tracking.uri is empty; set it or use tracking=off")
    return Tracker(str(t.uri), str(t.experiment), str(t.on_error), float(t.timeout))
