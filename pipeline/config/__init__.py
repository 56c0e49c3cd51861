"""Where the configuration lives, and how a stage gets its composed config.

``conf/`` (Hydra) is the single source of truth. A stage runs in one of two ways:

- ``python -m pipeline.train model=cnn train.epochs=5``: Hydra composes ``conf/`` with the
  command-line overrides, as in any Hydra application;
- ``python -m pipeline.train --params params.yaml``: the stage takes the already composed
  config from ``params.yaml``. This is how ``dvc.yaml`` runs every stage, so that DVC, which
  tracks the values in ``params.yaml``, and the stage always see the same values (see
  :mod:`pipeline.params` for how ``params.yaml`` follows ``conf/``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import quick_exit
from pipeline.config.help import HELP_FLAGS, stage_help
from pipeline.config.validation import validate, validate_schema
from pipeline.errors import ConfigError
from pipeline.io import ArtifactError, read_mapping

PACKAGE_CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
CONF_DIR_VARIABLE = "NNDL_CONF_DIR"
PARAMS_FLAG = "--params"


def conf_dir() -> Path:
    """The config directory: ``$NNDL_CONF_DIR`` if set, else ``./conf`` when the working
    directory has one (a DVC project runs its stages from its root, where DVC's own Hydra
    support also looks), else the ``conf/`` of the source checkout the package is in."""
    if os.environ.get(CONF_DIR_VARIABLE):
        return Path(os.environ[CONF_DIR_VARIABLE]).resolve()
    local = Path.cwd() / "conf"
    if (local / "config.yaml").is_file():
        return local.resolve()
    return PACKAGE_CONF_DIR


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The composed and validated config for these overrides, as a stage sees it."""
    return validate(compose_raw(overrides))


def compose_raw(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The composed config for these overrides, unchecked (what ``params.yaml`` stores)."""
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            return compose(config_name="config", overrides=list(overrides))
    except HydraException as err:  # unknown group choice, bad override syntax
        cause = err.__cause__ or err
        raise ConfigError(f"overrides {list(overrides)}: {one_line(cause)}") from None


def conf_hash(directory: Path | None = None) -> str:
    """sha256 over the names and contents of every YAML file under the config directory."""
    directory = directory or conf_dir()
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.yaml")):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_params(path: str | Path) -> DictConfig:
    """The validated config stored in a params file (``params.yaml``)."""
    return validate(load_raw_params(path))


def load_raw_params(path: str | Path) -> DictConfig:
    """The composed config stored in a params file, unchecked."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found; run `python -m pipeline.params`")
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, OmegaConfBaseException, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({one_line(err)})") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    missing = sorted({"seed", "paths", "data"} - set(cfg))
    if missing:
        raise ConfigError(f"{path}: missing {missing}; is it the composed config?")
    return cfg


def to_container(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """{"train": {"epochs": 3}} -> {"train.epochs": 3}; lists stay values."""
    data = to_container(cfg) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def one_line(err: BaseException) -> str:
    """An exception's message on one line (YAML and OmegaConf errors span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def stage_main(run: Callable[[DictConfig], Any], errors: tuple[type[Exception], ...]) -> None:
    """Entry point of a stage: ``--params FILE`` or Hydra overrides, then ``run(cfg)``.

    The config is validated before ``run`` starts. A config error ends as one line,
    ``config error: <key>: <problem> (got <value>)``, and exit status 2; other errors of the
    types in ``errors`` (bad input the user can fix) as ``error: ...`` and exit status 1.
    ``--help`` is answered from the files (:mod:`pipeline.config.help`); Hydra's own flags
    (``--cfg job``, ``--hydra-help``, ``-m``) go to Hydra's command line. A stage run as
    ``python -m`` that succeeds skips the interpreter's teardown (:mod:`.quick_exit`).
    """
    argv = sys.argv[1:]
    if getattr(run, "__module__", None) == "__main__":  # the stage's own process
        quick_exit.register()
    if any(arg in HELP_FLAGS for arg in argv):
        _print_help(stage_help(sys.modules[run.__module__], conf_dir()))
        sys.exit(0)
    if argv[:1] != [PARAMS_FLAG] and any(arg.startswith("-") for arg in argv):
        hydra.main(config_path=str(conf_dir()), config_name="config", version_base=None)(
            lambda cfg: _run_checked(run, cfg, errors)
        )()
        quick_exit.succeeded()
        return
    if argv[:1] == [PARAMS_FLAG] and len(argv) != 2:
        print(f"usage: python -m <stage> {PARAMS_FLAG} params.yaml", file=sys.stderr)
        sys.exit(2)
    from pipeline.tracking import remember_secrets

    remember_secrets(*(arg.partition("=")[2].strip("'\"") for arg in argv))
    try:
        cfg = load_raw_params(argv[1]) if argv[:1] == [PARAMS_FLAG] else compose_raw(argv)
    except ConfigError as err:
        _exit_config_error(err)
    _run_checked(run, cfg, errors)
    quick_exit.succeeded()


def _print_help(text: str) -> None:
    """Print ``text``; a reader that stops early (``--help | head``) ends it quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # The interpreter would flush stdout again at exit, into the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _run_checked(
    run: Callable[[DictConfig], Any], cfg: DictConfig, errors: tuple[type[Exception], ...]
) -> None:
    _remember_secrets(cfg)
    try:
        cfg = validate(cfg)
        run(cfg)
    except ConfigError as err:
        _exit_config_error(err)
    except errors as err:
        print(f"error: {_masked(one_line(err))}", file=sys.stderr)
        sys.exit(1)
    except MemoryError as err:  # e.g. a layer of 10^11 units: numpy names the size
        print(f"error: out of memory: {_masked(one_line(err))}", file=sys.stderr)
        sys.exit(1)


def _remember_secrets(cfg: DictConfig) -> None:
    """Every password in the config's values, for the error lines (and the tracking, the
    search) to hide wherever it appears (:func:`pipeline.tracking.remember_secrets`)."""
    from pipeline.tracking import remember_secrets

    try:
        values = flatten(OmegaConf.to_container(cfg, resolve=False)).values()
    except OmegaConfBaseException:  # the config's own checks will name the problem
        return
    remember_secrets(*values)


def _masked(message: str) -> str:
    from pipeline.tracking import mask_secrets

    return mask_secrets(message)


def _exit_config_error(err: ConfigError) -> None:
    print(f"config error: {_masked(one_line(err))}", file=sys.stderr)
    sys.exit(2)


# --- the search's result, applied by composition --------------------------------------------
SEARCH_RESULT_GROUPS = ("train", "model")


def with_search_result(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """``cfg`` with the search's best values composed onto it when ``train.use_search``, and
    where the training values came from: ``{"params_source": "config"}``, or
    ``"search study S trial N"`` with ``search``: the study, the best trial's number and
    validation score, and the baseline trial's (the configured values), to report side by side.

    ``${paths.best_params}`` holds ``config``, a fragment of the ``train`` and ``model``
    groups; it is merged onto ``cfg`` and the result validated again, so MLflow and the
    stage see the values the model is trained with under their ordinary names.
    """
    if not cfg.train.use_search:
        return cfg, {"params_source": "config", "search": None}
    path = Path(cfg.paths.best_params)
    if not path.is_file():
        raise ArtifactError(
            f"{path}: not found; run `python -m pipeline.search` first, or train without "
            "it: train.use_search=false"
        )
    from pipeline.config.files import BestParams

    try:
        document = validate_schema(BestParams, read_mapping(path), "")
    except ConfigError as err:
        raise ArtifactError(f"{path}: {err}") from None
    fragment = document["config"]
    if not fragment or not set(fragment) <= set(SEARCH_RESULT_GROUPS):
        raise ArtifactError(
            f"{path}: `config` must be a mapping of {list(SEARCH_RESULT_GROUPS)} sections "
            f"(got {fragment!r})"
        )
    searched = (document["model"], document["dataset"])
    if None not in searched and searched != (cfg.model.name, cfg.data.name):
        raise ArtifactError(
            f"{path}: the best values for model={searched[0]} on data={searched[1]}, but this "
            f"train has model={cfg.model.name} data={cfg.data.name}; run the search for it, or "
            "train without it: train.use_search=false"
        )
    try:
        merged = validate(OmegaConf.merge(cfg, fragment))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    baseline, best = document["baseline"] or {}, document["best"] or {}
    search = {
        "study": document["study"],
        "trial": document["trial"],
        "value": document["value"],
        "baseline_trial": baseline.get("trial"),
        "baseline_value": baseline.get("value"),
        "best_trial": best.get("trial"),
        "best_value": best.get("value"),
    }
    source = (
        f"search study {search['study']} trial {search['trial']}"
        if search["study"] is not None
        else f"the values in {path}"
    )
    return merged, {"params_source": source, "search": search}
