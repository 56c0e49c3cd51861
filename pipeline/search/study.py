"""Optuna's objects from the config: sampler, pruner, storage, and the study itself."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import optuna
from omegaconf import DictConfig
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend

from pipeline.config import to_container
from pipeline.errors import ConfigError
from pipeline.io import file_lock
from pipeline.search.optuna_compat import ignore_experimental_warnings
from pipeline.tracking import mask_secrets, remember_secrets


def make_sampler(cfg: DictConfig, seed: int) -> optuna.samplers.BaseSampler:
    name, startup = cfg.search.sampler.name, int(cfg.search.sampler.n_startup_trials)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    if name == "gp":
        try:
            import torch  # noqa: F401  (GPSampler needs it)
        except ImportError:
            raise ConfigError("search.sampler.name=gp needs PyTorch: pip install torch") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    raise ConfigError(f"search.sampler.name: {name!r} is not a sampler")


def make_pruner(cfg: DictConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    """Epochs are the resource: a trial reports validation accuracy after every epoch."""
    p = cfg.search.pruner
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=int(p.min_resource),
            max_resource=max_epochs,
            reduction_factor=int(p.reduction_factor),
        )
    if p.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=int(p.min_resource), reduction_factor=int(p.reduction_factor)
        )
    if p.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(p.n_startup_trials), n_warmup_steps=int(p.n_warmup_steps)
        )
    if p.name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"search.pruner.name: {p.name!r} is not a pruner")


def storage_file(cfg: DictConfig) -> Path | None:
    """The file of a SQLite or journal storage (None for a database server)."""
    url = str(cfg.search.storage)
    for prefix in ("sqlite:///", "journal://"):
        if url.startswith(prefix):
            return Path(url.removeprefix(prefix))
    return None


def make_storage(cfg: DictConfig) -> optuna.storages.BaseStorage:
    """SQLite / any SQLAlchemy URL (with heartbeats), or ``journal:///file`` (no heartbeats;
    stale trials are found by process id instead, see :mod:`pipeline.search.recovery`)."""
    url = str(cfg.search.storage)
    remember_secrets(url)  # a worker process's messages hide it too
    path = storage_file(cfg)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("journal://"):
        return JournalStorage(JournalFileBackend(str(path)))
    # SQLite: wait for the lock, don't fail
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {}
    try:
        with ignore_experimental_warnings():  # heartbeats are "experimental"
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=int(cfg.search.heartbeat_interval),
                grace_period=int(cfg.search.grace_period),
                heartbeat_stale_trial_callback=retry_callback(cfg),
            )
    except Exception as err:  # SQLAlchemy/driver errors: bad URL, server down, auth
        raise ConfigError(f"search.storage={mask_secrets(url)!r}: cannot open ({err})") from None


def retry_callback(cfg: DictConfig) -> RetryHeartbeatStaleTrialCallback:
    """Runs a crashed trial's parameters again (up to ``search.max_retry`` times)."""
    with ignore_experimental_warnings():
        return RetryHeartbeatStaleTrialCallback(max_retry=int(cfg.search.max_retry))


# The code a trial's score comes from. A study is resumed only by the code that scored its
# trials: DVC reruns the search when this code changes, and a study found under the old
# name would answer with trials the new code no longer reproduces.
TRIAL_CODE = (
    "pipeline.nn",
    "pipeline.estimators",
    "pipeline.factory",
    "pipeline.search.objective",
    "pipeline.search.space",
)


@functools.cache
def trial_code_digest() -> str:
    """sha256 of the source files of :data:`TRIAL_CODE` (a package: all its modules)."""
    digest = hashlib.sha256()
    for name in TRIAL_CODE:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if spec.submodule_search_locations else [origin]
        for path in files:
            digest.update(f"{name}/{path.relative_to(origin.parent).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def data_digest(cfg: DictConfig) -> str:
    """sha256 of the prepared and augmented meta.json: the source files' checksums, the
    split, the augmentation and the checksum of the split it augmented."""
    digest = hashlib.sha256()
    for path in (Path(cfg.paths.prepared) / "meta.json", Path(cfg.paths.augmented) / "meta.json"):
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()


def study_name(cfg: DictConfig) -> str:
    """``search.study_name``, or one derived from what makes trials comparable: the
    settings, the data (:func:`data_digest`) and the code (:func:`trial_code_digest`)."""
    if cfg.search.study_name:
        return str(cfg.search.study_name)
    relevant = {
        key: to_container(cfg[key]) for key in ("data", "augment", "model", "train", "search")
    }
    how = ("n_trials", "timeout", "workers", "storage", "study_name", "threads", "min_gain_se")
    for key in how:
        relevant["search"].pop(key, None)  # how long, where or what is done with the trials
    # Train settings that do not change what a trial learns (search.epochs replaces the
    # epochs). The configured values of searched dimensions stay: they are trial 0.
    ignored = {"use_search", "threads", "track_gradient_norms"}
    ignored |= set() if "epochs" in cfg.search.space else {"epochs"}
    relevant["train"] = {k: v for k, v in relevant["train"].items() if k not in ignored}
    relevant["seed"] = cfg.seed
    relevant["data_files"] = data_digest(cfg)
    relevant["trial_code"] = trial_code_digest()
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.model.name}-{cfg.data.name}-{digest}"


def lock_path(cfg: DictConfig, purpose: str) -> Path:
    """A lock file beside a file storage (one in the temp dir for a database server)."""
    path = storage_file(cfg)
    if path is not None:
        return path.with_name(f"{path.name}.{purpose}.lock")
    digest = hashlib.sha256(f"{cfg.search.storage}|{purpose}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"nndl-search-{digest}.lock"


def create_study(
    cfg: DictConfig,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study, or load it if it exists. Creating the storage's tables and the
    study is serialised by a file lock for file storages (three searches started together
    on a fresh directory); a database server may still race, so that is retried."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(cfg)
    with file_lock(lock_path(cfg, "create")):
        for attempt in range(4):
            try:
                return optuna.create_study(
                    storage=make_storage(cfg), study_name=name, direction="maximize",
                    load_if_exists=True, sampler=sampler, pruner=pruner,
                )  # fmt: skip
            except Exception:  # ConfigError too: SQLite may be busy while a killed
                # process's transaction is rolled back; the last attempt's error is raised
                if attempt == 3:
                    raise
                time.sleep(0.25 * 2**attempt)
    raise AssertionError("unreachable")
