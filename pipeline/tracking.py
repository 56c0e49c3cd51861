"""MLflow adapter: the one module (with the search stage) that talks to MLflow.

A :class:`Tracker` logs one stage into an MLflow run: the composed config flattened as
params, per-epoch metrics (step = epoch, one batched request per epoch), final metrics, tags,
artifacts and the model. The train stage starts the run and records its id in ``paths.run``;
evaluate resumes the same run (and registers the model, :meth:`Tracker.register_champion`),
so one run holds the whole story of a model.

Everything goes through :class:`mlflow.MlflowClient` with explicit run and experiment ids:
no fluent "active run", no global tracking URI, no environment variables set.

When tracking is off (``tracking=off``) every method is a no-op. When the tracking store
fails (server down, bad URI) the ``tracking.on_error`` setting decides: ``warn`` reports it
once on stderr and the stage goes on without tracking; ``fail`` raises
:class:`TrackingError`. Calls to a server give up after ``tracking.timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.metadata
import io
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import numpy as np

from pipeline.io import file_lock, is_partial_write

MAX_PARAM_LENGTH = 6000
# pyproject's [project] name: the distribution a logged model requires (tests check that it
# installs this package).
DISTRIBUTION = "nndl-pipeline"
EPOCH_BATCH_SECONDS = 10.0  # epoch metrics go to MLflow together, at most this often
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch
# MLflow 3's UI opens an experiment on its runs (not the GenAI overview) when this tag says
# the experiment is for model training (the values are MLflow's ExperimentKind enum).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# Who owns a run: a RUNNING run whose process is gone from this host is stale.
PID_TAG, HOST_TAG, PROCESS_START_TAG = "nndl.pid", "nndl.host", "nndl.process_start"
CHAMPION_ALIAS = "champion"
TEST_CHECKSUM_TAG = "test_split_checksum"


class TrackingError(RuntimeError):
    """The tracking store failed and ``tracking.on_error`` is ``fail``."""


# --- secrets ---------------------------------------------------------------------------------
# Finds URL-shaped words in a longer text; each is then parsed by the library that owns it.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_SECRET_QUERY_KEYS = ("pass", "pwd", "secret", "token")
MASK = "***"


# user:password@host, with or without a scheme: the password runs to the last "@".
_USER_INFO = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.\-]*:)?(?://)?[^:/@\s]*:(?P<password>(?!//).+)@[^@]*"
)
_known_secrets: set[str] = set()
_SHORTEST_SECRET = 3  # shorter ones would mask ordinary words of every message


def remember_secrets(*values: Any) -> None:
    """Take note of the passwords in these configured values (``search.storage``,
    ``tracking.uri``, any URL of the config): :func:`mask_secrets` hides them from then on
    wherever they appear, even where no URL around them is recognisable (a password with a
    space, a URL without its scheme, a library's message that quotes the parts)."""
    for value in values:
        for secret in secrets_in(value):
            for form in {secret, unquote(secret), quote(unquote(secret), safe="")}:
                if len(form) >= _SHORTEST_SECRET:
                    _known_secrets.add(form)


def secrets_in(value: Any) -> list[str]:
    """The password of ``value`` read as a URL (``user:password@host``, with or without a
    scheme) and its query values named like a password or token; [] for other values."""
    if not isinstance(value, str) or ("@" not in value and "?" not in value):
        return []
    found = []
    match = _USER_INFO.fullmatch(value.strip().split("?")[0])
    if match and match["password"]:
        found.append(match["password"])
    query = value.partition("?")[2]
    found += [v for k, v in parse_qsl(query, keep_blank_values=True) if _is_secret_key(k) and v]
    return found


def mask_secrets(value: Any) -> Any:
    """Hide passwords in every URL of ``value`` (one URL, or a text such as an error message),
    and every password :func:`remember_secrets` took note of.

    Storage URLs are parsed with SQLAlchemy's :func:`~sqlalchemy.engine.make_url` (passwords
    may hold ``/``, user names may be empty: ``postgresql://:pw@host/db``), http(s) URLs with
    :func:`urllib.parse.urlsplit`; query values named like a password or token are hidden
    too. A URL neither can parse loses everything between ``://`` and its last ``@``.
    Non-strings are returned unchanged.
    """
    if not isinstance(value, str):
        return value
    if "://" in value:
        value = _URL_IN_TEXT.sub(_mask_url_in_text, value)
    for secret in sorted(_known_secrets, key=len, reverse=True):
        value = value.replace(secret, MASK)
    return value


def _mask_url_in_text(match: re.Match) -> str:
    """A URL found in a text, masked; punctuation that closes the sentence around it (as in
    "(postgresql://...): error") is left outside, not parsed into the URL."""
    found = match.group(0)
    url = found.rstrip(").,:;]}")
    return mask_url(url) + found[len(url) :]


def mask_url(url: str) -> str:
    """``url`` with its password (and secret query values) replaced by ``***``."""
    try:
        if url.split("://", 1)[0].lower() in ("http", "https"):
            masked = _mask_http_url(url)
            if masked is not None:
                return masked
        return _mask_storage_url(url)
    except Exception:  # unparseable: hide the whole user-info part, whatever it holds
        head, _, rest = url.partition("://")
        return f"{head}://{MASK}@{rest.rpartition('@')[2]}" if "@" in rest else url


def _is_secret_key(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_QUERY_KEYS)


def _mask_http_url(url: str) -> str | None:
    """urllib's reading; None when urllib sees no user info but the text has an ``@`` (a
    password with a raw ``/``, which SQLAlchemy's grammar reads as a password)."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    elif "@" in url.partition("://")[2].split("?")[0]:
        return None
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(_is_secret_key(k) for k, _ in pairs):
        query = urlencode([(k, MASK if _is_secret_key(k) else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _mask_storage_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    secret_keys = [k for k in parsed.query if _is_secret_key(k)]
    if parsed.password is None and not secret_keys:
        return url
    if secret_keys:
        parsed = parsed.update_query_dict({k: MASK for k in secret_keys})
    return parsed.render_as_string(hide_password=True)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- what a logged model trusts and needs ----------------------------------------------------
def skops_trusted_types() -> list[str]:
    """Every class of ours a fitted estimator may hold (:func:`estimators.trusted_types`:
    found from the class hierarchies of estimators, activations, costs and layers); skops
    refuses to load any other type (see README, "Trust model")."""
    from pipeline.estimators import trusted_types

    return trusted_types()


class _RefuseTorch(importlib.abc.MetaPathFinder):
    """A meta path finder that makes ``import torch`` fail (ImportError) while installed."""

    @staticmethod
    def find_spec(name: str, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"{name} is not imported while loading skops", name=name)
        return None


def import_skops() -> None:
    """Import ``skops.io`` without PyTorch.

    skops builds its list of trusted scikit-learn types on import with
    :func:`sklearn.utils.all_estimators`, whose package walk imports every subpackage,
    ``sklearn.externals.array_api_compat.torch`` included: with PyTorch installed that is
    ``import torch`` (about 4 s of a 5 s import). The walk skips packages that raise
    ImportError, so PyTorch is refused for the duration of the import (our models hold no
    tensors). Already imported PyTorch is left alone."""
    if "skops.io" in sys.modules or "torch" in sys.modules:
        import skops.io  # noqa: F401

        return
    sys.meta_path.insert(0, _RefuseTorch)
    try:
        import skops.io  # noqa: F401
    finally:
        sys.meta_path.remove(_RefuseTorch)


def _in_thread(function: Callable[[], Any], name: str) -> Future:
    """``function()`` run in a daemon thread (one that never holds up the interpreter's exit);
    its result, or its exception, in the future returned."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(function())
        except BaseException as err:  # handed to whoever asks for the result
            future.set_exception(err)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _import_tracking(remote: bool, for_model: bool) -> None:
    """What opening the store imports (MLflow's client and, for a database, its SQLAlchemy
    store) and, with ``for_model``, what saving a model needs."""
    import mlflow.tracking  # noqa: F401

    if not remote:
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    if for_model:
        _import_model_logging()


def _import_model_logging() -> None:
    """What saving a model imports (skops first, without PyTorch; MLflow's sklearn flavour
    and model description; our model files' reader) and the map its requirement check
    builds (mlflow_compat)."""
    import_skops()
    import mlflow.models  # noqa: F401
    import mlflow.sklearn  # noqa: F401

    import pipeline.artifacts  # noqa: F401
    from pipeline.mlflow_compat import warm_requirement_check

    warm_requirement_check()


def model_requirements() -> list[str]:
    """Pinned pip requirements of a logged model: our installed package (the model loads its
    classes from there, never from code inside the artifact) and what it imports."""
    packages = [DISTRIBUTION, "numpy", "scipy", "scikit-learn", "skops"]
    try:
        importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # a checkout that is not installed
        packages.remove(DISTRIBUTION)
    return [f"{name}=={importlib.metadata.version(name)}" for name in packages]


# --- store access ----------------------------------------------------------------------------
def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores and in-memory)."""
    if not uri.startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database).resolve() if database and database != ":memory:" else None


def _check_sqlite_writable(uri: str) -> None:
    """Fail at once on a SQLite store that cannot be written (a read-only disk or directory):
    MLflow's SQLAlchemy engine would retry for minutes before giving up. SQLite writes its
    journal beside the database, so the directory must be writable too."""
    database = _sqlite_path(uri)
    if database is None:
        return
    directory = next((p for p in database.parents if p.exists()), None)
    if directory is None:
        return
    writable = os.access(directory, os.W_OK) and (
        not database.exists() or os.access(database, os.W_OK)
    )
    if not writable:
        raise PermissionError(f"{database}: the tracking store cannot be written (read-only)")


@contextlib.contextmanager
def store_creation_lock(uri: str) -> Iterator[None]:
    """Serialise first use of a SQLite store between processes: MLflow creates and migrates
    the schema on first use, and two processes doing it at once fail ("duplicate column
    name"). The lock file sits in the temporary directory (named by a digest of the database
    path), so that no file appears in the work tree."""
    database = _sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(str(database).encode()).hexdigest()[:16]
    with file_lock(Path(tempfile.gettempdir()) / f"nndl-mlflow-{digest}.lock"):
        yield


def _call_with_deadline(call: Callable, seconds: float, *args, **kwargs):
    """``call(*args, **kwargs)`` in a daemon thread; TimeoutError after ``seconds``.

    MLflow reads its HTTP timeout and retry count only from environment variables; rather
    than set those for the whole process, each call to a server runs under this deadline. A
    call that misses it is abandoned (the thread dies with the process)."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = call(*args, **kwargs)
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err
        finally:
            done.set()

    threading.Thread(target=target, daemon=True, name="mlflow-call").start()
    if not done.wait(seconds):
        raise TimeoutError(f"no answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class _DeadlineClient:
    """An MlflowClient whose every method call gives up after ``seconds`` (None: no limit)."""

    def __init__(self, client, seconds: float | None) -> None:
        self._client, self._seconds = client, seconds

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if self._seconds is None or not callable(attribute):
            return attribute
        return lambda *args, **kwargs: _call_with_deadline(
            attribute, self._seconds, *args, **kwargs
        )


class _MaskingStream(io.TextIOBase):
    """Forwards writes to ``stream`` with passwords masked. MLflow prints "View run ... at
    <server URL>" when a run against a server ends; with credentials in the URL that line
    would show the password."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(mask_secrets(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _process_start(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (Linux), or "" where unknown;
    tells a live owner from an unrelated process that reused its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]


def _owner_alive(tags: dict[str, str]) -> bool:
    """Whether the process named by a run's owner tags still runs (on this host)."""
    try:
        pid = int(tags[PID_TAG])
        os.kill(pid, 0)
    except (KeyError, ValueError):
        return True  # not ours to judge
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    started = tags.get(PROCESS_START_TAG, "")
    return not started or _process_start(pid) in ("", started)


def owner_tags(pid: int | None = None) -> dict[str, str]:
    """Tags naming the process that owns a run (``pid``, by default this one)."""
    pid = pid or os.getpid()
    return {
        PID_TAG: str(pid),
        HOST_TAG: socket.gethostname(),
        PROCESS_START_TAG: _process_start(pid),
    }


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@dataclass(frozen=True)
class Registration:
    """What :meth:`Tracker.register_champion` did."""

    name: str
    version: str | None
    champion: str | None  # the version the alias points at afterwards
    promoted: bool
    reason: str


# --- the tracker -----------------------------------------------------------------------------
def check_on_error(on_error: str) -> None:
    """``tracking.on_error`` is one of the two policies."""
    if on_error not in ("warn", "fail"):
        raise ValueError(f"tracking.on_error must be 'warn' or 'fail'; got {on_error!r}")


class Tracker:
    """One stage's view of one MLflow run; build it with :func:`tracker_from_config`."""

    def __init__(
        self,
        uri: str,
        experiment: str,
        on_error: str = "warn",
        timeout: float = 10,
        owner_pid: int | None = None,
    ):
        check_on_error(on_error)
        remember_secrets(uri)
        self.uri = uri
        self.experiment = experiment
        self.on_error = on_error
        self.timeout = timeout
        # The process a run belongs to (its owner tags): the stage's, also when this tracker
        # runs in a worker process beside it (pipeline.tracking_process).
        self.owner_pid = owner_pid or os.getpid()
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.model_id: str | None = None
        self.active = True
        self._client: _DeadlineClient | None = None
        self._epochs: list = []  # epoch metrics not sent yet (see log_epoch)
        self._epochs_sent = time.monotonic()
        self._import_error: BaseException | None = None  # see preload
        self._probe: Future | None = None  # the server's answer, asked for by preload

    @property
    def remote(self) -> bool:
        return self.uri.split("://", 1)[0].lower() in ("http", "https")

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
                raise TrackingError(message) from None
            print(f"warning: {message}; continuing without tracking", file=sys.stderr)
            self.active = False  # the run stays as the store last saw it

    # --- the store -----------------------------------------------------------------------
    def preload(self, for_model: bool = False) -> None:
        """Import MLflow's client and store now (with ``for_model``, also what
        :meth:`log_saved_model` needs), before the first call that needs them: a tracker in a
        worker process (:mod:`pipeline.tracking_process`) does this while the stage reads its
        data. Nothing is written until the first call that needs the store; a server is asked
        whether it is there (:meth:`_probe_server`) in a thread beside the imports, so a
        silent one costs the timeout once rather than after the imports. A failure is kept
        and raised by that first call, under ``on_error``."""
        if not self.active or self._client is not None:
            return
        if self.remote and self._probe is None:
            self._probe = _in_thread(self._probe_server, name="mlflow-probe")
        try:
            _import_tracking(remote=self.remote, for_model=for_model)
        except Exception as err:  # raised again by the first call that opens the store
            self._import_error = err

    def _open(self) -> _DeadlineClient:
        """The client, with the experiment found or created (once per tracker).

        Credentials in an http(s) URI stay in the URI: MLflow builds each request URL from
        it and ``requests`` sends the user info as HTTP basic auth. The alternatives
        (MLFLOW_TRACKING_USERNAME/PASSWORD, MLflow's credentials file, a request-header
        plugin) would set process-wide environment, write to the user's home, or need an
        installed entry point; every text MLflow or we print is masked instead."""
        if self._import_error is not None:
            error, self._import_error = self._import_error, None
            raise error
        if self._client is None:
            if self.remote:
                probe, self._probe = self._probe, None
                if probe is None:
                    self._probe_server()
                else:
                    probe.result()  # raises what the probe raised
            _check_sqlite_writable(self.uri)
            from mlflow import MlflowClient

            with store_creation_lock(self.uri), warnings.catch_warnings():
                # MLflow's SQL store uses a loader strategy SQLAlchemy 2.1 deprecates.
                warnings.filterwarnings(
                    "ignore", "The ``noload`` loader strategy", category=DeprecationWarning
                )
                client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
                client = _DeadlineClient(client, self.timeout if self.remote else None)
                self.experiment_id = self._experiment_id(client)
            self._client = client
        return self._client

    def _probe_server(self) -> None:
        """Fail at once when nothing listens (MLflow would retry a refused connection until
        the deadline): one request to the server's ``/health``, without credentials; any
        HTTP answer means the server is there."""
        import urllib.error
        import urllib.request

        parts = urlsplit(self.uri)
        base = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        try:
            with urllib.request.urlopen(f"{base.rstrip('/')}/health", timeout=self.timeout):
                pass
        except urllib.error.HTTPError:
            pass
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, ssl.SSLError):
                return  # it answered; certificates are MLflow's business (its TLS settings)
            raise ConnectionError(f"cannot reach the server: {reason}") from None

    def _experiment_id(self, client) -> str:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return client.create_experiment(
                    self.experiment,
                    artifact_location=self._artifact_location(),
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                )
            except MlflowException:  # created meanwhile by another process (server stores)
                found = client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            raise MlflowException(
                f"experiment {self.experiment!r} is deleted; restore it (`mlflow experiments "
                "restore`) or set another tracking.experiment"
            )
        if EXPERIMENT_KIND_TAG not in found.tags:
            client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return found.experiment_id

    def _artifact_location(self) -> str | None:
        """For a SQLite store, ``mlruns/<experiment>`` beside the database file (MLflow's
        default, ``./mlruns``, is relative to the working directory, wherever that is). Other
        stores keep their own default (a server decides for its clients)."""
        database = _sqlite_path(self.uri)
        if database is None:
            return None
        return f"{(database.parent / 'mlruns').as_uri()}/{quote(self.experiment, safe='')}"

    # --- runs ----------------------------------------------------------------------------
    def start(self, run_name: str, run_id: str | None = None, tags: dict | None = None) -> None:
        """Start a new run (or resume ``run_id``) in the configured experiment."""
        if not self.active:
            return
        all_tags = {
            **{k: str(mask_secrets(v)) for k, v in (tags or {}).items()},
            **owner_tags(self.owner_pid),
        }
        with self._guard("starting the run"):
            client = self._open()
            if run_id:
                client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
            else:
                run = client.create_run(self.experiment_id, run_name=run_name)
                self.run_id = run.info.run_id
            client.log_batch(self.run_id, tags=_run_tags(all_tags))

    def end(self, status: str = "FINISHED") -> None:
        self.flush()
        if not self.active or self.run_id is None:
            return
        with self._guard("ending the run"):
            self._terminate(self.run_id, status)

    def _terminate(self, run_id: str, status: str) -> None:
        if not self.remote or mask_secrets(self.uri) == self.uri:
            self._open().set_terminated(run_id, status=status)
            return
        # MLflow prints the server URL (with its credentials) when a remote run ends; the
        # call may outlive its deadline, so its own thread puts stdout back when it returns.
        original = sys.stdout
        masked = _MaskingStream(original)

        def terminate() -> None:
            try:
                self._client._client.set_terminated(run_id, status=status)
            finally:
                if sys.stdout is masked:
                    sys.stdout = original

        sys.stdout = masked
        _call_with_deadline(terminate, self.timeout)

    def close_stale_runs(self) -> list[str]:
        """Mark this experiment's RUNNING runs whose process is gone as KILLED.

        A run is stale when its owner tags name this host and a pid that no longer runs (or
        runs a younger process). Runs from other hosts, and runs without owner tags, are
        left alone. Returns the ids of the runs closed."""
        if not self.active:
            return []
        closed: list[str] = []
        with self._guard("closing runs left by killed processes"):
            client = self._open()
            host = socket.gethostname()
            query = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
            token = None
            while True:
                page = client.search_runs(
                    [self.experiment_id], query, max_results=500, page_token=token
                )
                for run in page:
                    if run.info.run_id != self.run_id and not _owner_alive(run.data.tags):
                        reason = f"process {run.data.tags[PID_TAG]} on {host} is gone"
                        client.set_tag(run.info.run_id, "nndl.closed_because", reason)
                        client.set_terminated(run.info.run_id, status="KILLED")
                        closed.append(run.info.run_id)
                token = page.token
                if not token:
                    break
        return closed

    # --- logging -------------------------------------------------------------------------
    def log_config(self, cfg) -> None:
        """The composed config (a DictConfig or dict), flattened (``train.learning_rate``),
        secrets masked; keys the run already has are kept (MLflow params are write-once)."""
        if not self.active or self.run_id is None:
            return
        from omegaconf import DictConfig, OmegaConf

        data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        flat = _flatten(data)
        remember_secrets(*flat.values())  # e.g. in the tracking worker, which saw no config
        params = {k: str(mask_secrets(v)) for k, v in flat.items()}
        with self._guard("logging params"):
            client = self._open()
            existing = client.get_run(self.run_id).data.params
            new = [_param(k, v) for k, v in params.items() if k not in existing]
            if new:
                client.log_batch(self.run_id, params=new)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Finite values only, in one request."""
        if not self.active or self.run_id is None:
            return
        batch = _metrics(metrics, step)
        if batch:
            with self._guard("logging metrics"):
                self._open().log_batch(self.run_id, metrics=batch)

    def log_history(self, history: list[dict[str, Any]]) -> None:
        """Every epoch's figures (``{"epoch": 3, "cost": 0.2, ...}``, step = epoch) in a few
        requests of at most 1,000 metrics (MLflow's ``log_batch`` limit)."""
        if not self.active or self.run_id is None:
            return
        batch = [
            metric
            for entry in history
            for metric in _metrics(
                {k: v for k, v in entry.items() if k != "epoch"}, int(entry["epoch"])
            )
        ]
        with self._guard("logging the epochs"):
            client = self._open()
            for start in range(0, len(batch), 1000):
                client.log_batch(self.run_id, metrics=batch[start : start + 1000])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """A file, or a directory's files (under ``artifact_path``, as MLflow's
        ``log_artifacts`` places them)."""
        if not self.active or self.run_id is None:
            return
        with self._guard(f"logging {path}"):
            client = self._open()
            if Path(path).is_dir():
                self._log_directory(client, Path(path), artifact_path)
            else:
                client.log_artifact(self.run_id, str(path), artifact_path)

    def _log_directory(self, client, directory: Path, artifact_path: str | None) -> None:
        """File by file, without the temporary files of writes in progress: another process
        may be writing into the directory (searches sharing ``paths.search``), and a file
        listed, then renamed over its target before it is copied, is gone."""
        for file in sorted(directory.rglob("*")):
            if not file.is_file() or is_partial_write(file):
                continue
            subdirectory = file.parent.relative_to(directory).as_posix()
            parts = [p for p in (artifact_path, subdirectory) if p and p != "."]
            with contextlib.suppress(FileNotFoundError):  # removed since it was listed
                client.log_artifact(self.run_id, str(file), "/".join(parts) or None)

    def log_model(self, estimator, X_example: np.ndarray) -> None:
        """The estimator as an MLflow sklearn model, linked to the run as its output: skops
        format with our types trusted explicitly, a signature, an input example and explicit
        pip requirements (our installed package, no inference); no code in the artifact."""
        self.flush()
        if not self.active or self.run_id is None:
            return
        with self._guard("logging the model"):
            client = self._open()
            model = client.create_logged_model(
                self.experiment_id, name="model", source_run_id=self.run_id
            )
            try:
                self._save_model_artifacts(client, model, estimator, X_example[:5])
            except BaseException:
                with contextlib.suppress(Exception):
                    client.finalize_logged_model(model.model_id, "FAILED")
                raise
            client.finalize_logged_model(model.model_id, "READY")
            self.model_id = model.model_id

    def log_saved_model(self, path: str | os.PathLike, X_example: np.ndarray) -> None:
        """:meth:`log_model` for the model saved at ``path`` (``.npz`` and ``.json``, as
        :func:`pipeline.artifacts.save_model` wrote them): what is logged is what the stage
        saved, read back the way evaluate reads it."""
        if not self.active or self.run_id is None:
            return
        from pipeline.artifacts import load_model

        with self._guard(f"reading the model saved at {path}"):
            estimator = load_model(path)
        if self.active:
            self.log_model(estimator, X_example)

    def _save_model_artifacts(self, client, model, estimator, example: np.ndarray) -> None:
        _import_model_logging()
        import mlflow.sklearn
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model, infer_signature

        client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step=0)])
        description = Model(
            artifact_path=model.artifact_location,
            run_id=self.run_id,
            model_uuid=model.model_id,
            model_id=model.model_id,
        )
        with tempfile.TemporaryDirectory(prefix="nndl-model-") as tmp, warnings.catch_warnings():
            # The example is a float array: MLflow's hint about integer columns and missing
            # values does not apply, and is the one warning saving this model gives.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.types")
            local = Path(tmp) / "model"
            mlflow.sklearn.save_model(
                estimator,
                str(local),
                mlflow_model=description,
                serialization_format="skops",
                skops_trusted_types=skops_trusted_types(),
                signature=infer_signature(example, estimator.predict(example)),
                input_example=example,
                pip_requirements=model_requirements(),
            )
            client.log_model_artifacts(model.model_id, str(local))

    def epoch_logger(self) -> Callable:
        """An estimator callback logging each epoch's figures (:meth:`log_epoch`); the
        names are whatever :meth:`EpochInfo.metrics` gives."""
        return lambda info: self.log_epoch(info.metrics(), info.epoch)

    def log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        """One epoch's figures, step = epoch.

        Epochs are sent together, one ``log_batch`` every ``EPOCH_BATCH_SECONDS`` (and by
        :meth:`flush`, which :meth:`end` and :meth:`log_model` call): a request to the
        SQLite store costs 5-10 ms of Python, as much as a short epoch of the MLP on the
        default data. Requests are synchronous (to a server, each under the deadline):
        MLflow's asynchronous ``log_batch`` hides little of that time from a training that
        holds the GIL, and its logging thread, which polls its queue once a second, holds
        up the end of the run by up to a second (measured 0.75-0.84 s)."""
        if not self.active or self.run_id is None:
            return
        self._epochs.extend(_metrics(metrics, epoch))
        if time.monotonic() - self._epochs_sent >= EPOCH_BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Send the epoch metrics gathered since the last request, in one request (MLflow
        takes up to 1,000 metrics per batch)."""
        metrics, self._epochs = self._epochs, []
        self._epochs_sent = time.monotonic()
        if not metrics or not self.active or self.run_id is None:
            return
        with self._guard("logging metrics"):
            client = self._open()
            for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                client.log_batch(
                    self.run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH]
                )

    # --- model registry --------------------------------------------------------------------
    def register_champion(
        self,
        name: str,
        metric: str,
        value: float,
        test_checksum: str,
        greater_is_better: bool = True,
    ) -> Registration | None:
        """Register this run's logged model as a new version of ``name`` tagged with
        ``metric=value`` and the test split's checksum; move the ``champion`` alias to it
        when there is no champion yet, or when it beats the champion's ``metric`` measured
        on the same test split (same checksum). None when not tracking."""
        if not self.active or self.run_id is None:
            return None
        result = None
        with self._guard(f"registering the model as {name}"):
            client = self._open()
            model_id = self.model_id or self._logged_model_id(client)
            if model_id is None:
                return Registration(name, None, None, False, "the run logged no model")
            with store_creation_lock(self.uri):  # one comparison-and-move at a time
                _ensure_registered_model(client, name)
                # The logged model's own artifact location: a "models:/<id>" source would be
                # resolved through MLflow's process-wide tracking URI, not this client's.
                version = client.create_model_version(
                    name,
                    source=client.get_logged_model(model_id).artifact_location,
                    run_id=self.run_id,
                    tags={metric: repr(float(value)), TEST_CHECKSUM_TAG: test_checksum},
                    model_id=model_id,
                )
                result = self._maybe_promote(client, name, str(version.version), metric, value,
                                             test_checksum, greater_is_better)  # fmt: skip
        return result

    def _logged_model_id(self, client) -> str | None:
        outputs = client.get_run(self.run_id).outputs
        models = outputs.model_outputs if outputs is not None else []
        return models[-1].model_id if models else None

    def _maybe_promote(
        self, client, name, version, metric, value, checksum, greater_is_better
    ) -> Registration:
        from mlflow.exceptions import MlflowException

        try:
            champion = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
        except MlflowException:
            champion = None
        promote, reason = _beats(champion, metric, float(value), checksum, greater_is_better)
        if promote:
            client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
        version = str(version)
        return Registration(
            name, version, version if promote else str(champion.version), promote, reason
        )

    # --- nested runs (search trials) ---------------------------------------------------------
    # Trials may run in several processes at once; each goes through its own run id.
    def start_child(self, parent_run_id: str, name: str, params: dict) -> str | None:
        """A run nested under ``parent_run_id``; returns its id (None when not tracking)."""
        if not self.active:
            return None
        child_id = None
        with self._guard(f"starting {name}"):
            client = self._open()
            parent = client.get_run(parent_run_id)
            child = client.create_run(
                parent.info.experiment_id,
                run_name=name,
                tags={"mlflow.parentRunId": parent_run_id, **owner_tags(self.owner_pid)},
            )
            child_id = child.info.run_id
            client.log_batch(
                child_id, params=[_param(k, mask_secrets(v)) for k, v in params.items()]
            )
        return child_id

    def log_child_metrics(self, run_id: str | None, metrics: dict, step: int) -> None:
        """One epoch of a trial: one synchronous request (see :meth:`epoch_logger`)."""
        if not self.active or run_id is None:
            return
        batch = _metrics(metrics, step)
        if batch:
            with self._guard("logging trial metrics"):
                self._open().log_batch(run_id, metrics=batch)

    def end_child(self, run_id: str | None, status: str, tags: dict) -> None:
        self.flush()
        if not self.active or run_id is None:
            return
        with self._guard("ending a trial run"):
            self._open().log_batch(run_id, tags=_run_tags(tags))
            self._terminate(run_id, status)


def _beats(champion, metric: str, value: float, checksum: str, greater_is_better: bool):
    """(promote?, why) for a new version scoring ``value`` against the current champion."""
    if champion is None:
        return True, "first registered version"
    if champion.tags.get(TEST_CHECKSUM_TAG) != checksum:
        return False, f"champion v{champion.version} was measured on another test split"
    try:
        best = float(champion.tags[metric])
    except (KeyError, ValueError):
        return True, f"champion v{champion.version} has no {metric}"
    better = value > best if greater_is_better else value < best
    verdict = "beats" if better else "does not beat"
    return better, f"{metric} {value:.6g} {verdict} champion v{champion.version} ({best:.6g})"


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        with contextlib.suppress(MlflowException):  # created meanwhile elsewhere
            client.create_registered_model(name)


def registered_model_name(model: str, dataset: str) -> str:
    """The Model Registry name of a model trained on a dataset: ``nndl-cnn-mnist_sample``."""
    return f"nndl-{model}-{dataset}"


def _param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, str(value)[:MAX_PARAM_LENGTH])


def _run_tags(tags: dict) -> list:
    from mlflow.entities import RunTag

    return [RunTag(k, str(mask_secrets(v))) for k, v in tags.items()]


def _metrics(metrics: dict, step: int | None) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(k, float(v), now, step or 0)
        for k, v in metrics.items()
        if v is not None and np.isfinite(v)
    ]


class NullTracker(Tracker):
    """Tracking switched off: every call returns at once."""

    def __init__(self) -> None:
        super().__init__(uri="", experiment="", on_error="warn")
        self.active = False


def tracker_settings(cfg) -> dict[str, Any] | None:
    """A tracker's arguments from the ``tracking`` config group; None when tracking is off."""
    t = cfg.tracking
    if not t.enabled:
        return None
    if not t.uri:
        raise ValueError("tracking.uri is empty; set it or use tracking=off")
    return {
        "uri": str(t.uri),
        "experiment": str(t.experiment),
        "on_error": str(t.on_error),
        "timeout": float(t.timeout),
    }


def tracker_from_config(cfg) -> Tracker:
    """The tracker the ``tracking`` config group asks for, in this process (the search and
    the book's experiments; train and evaluate use :mod:`pipeline.tracking_process`)."""
    settings = tracker_settings(cfg)
    return NullTracker() if settings is None else Tracker(**settings)
