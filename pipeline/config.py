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
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError

PACKAGE_CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
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
    """The composed config for these overrides, as a stage's Hydra ``main`` would see it."""
    with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def conf_hash(directory: Path | None = None) -> str:
    """sha256 over the names and contents of every YAML file under the config directory."""
    directory = directory or conf_dir()
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*.yaml")):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def load_params(path: str | Path) -> DictConfig:
    """The composed config stored in a params file (``params.yaml``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found; run `python -m pipeline.params`")
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
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


def stage_main(run: Callable[[DictConfig], Any], errors: tuple[type[Exception], ...]) -> None:
    """Entry point of a stage: ``--params FILE`` or Hydra's command line, then ``run(cfg)``.

    Errors of the types in ``errors`` (bad input the user can fix) end as one line on stderr
    and exit status 1, not as a traceback.
    """

    def guarded(cfg: DictConfig) -> None:
        try:
            run(cfg)
        except errors as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    argv = sys.argv[1:]
    if argv[:1] == [PARAMS_FLAG]:
        if len(argv) != 2:
            print(f"usage: python -m <stage> {PARAMS_FLAG} params.yaml", file=sys.stderr)
            sys.exit(2)
        try:
            cfg = load_params(argv[1])
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        guarded(cfg)
        return
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base=None)(guarded)()
