"""The ``params`` stage: keep ``params.yaml`` equal to the composed ``conf/``.

DVC tracks parameter values in ``params.yaml``; Hydra composes them from ``conf/``. DVC
composes ``conf/`` into ``params.yaml`` itself only in ``dvc exp run`` (with ``-S``
overrides, since ``.dvc/config`` enables its Hydra support), never in ``dvc repro``. This
stage closes that gap. It is the first stage of ``dvc.yaml``, depends on ``conf/`` and
writes ``params.yaml`` (a persistent output), and every other stage declares its ``params``
from that file, so DVC runs this stage first and then exactly the stages whose values
changed.

Which file wins:
- ``params.yaml`` carries ``conf_hash``, the hash of the ``conf/`` it was composed from.
  When ``conf/`` has changed since (a user edited it), the file is stale: compose again.
- When ``conf_hash`` is missing, ``dvc exp run`` has just composed ``conf/`` with the
  experiment's overrides (``-S train.learning_rate=0.5``, ``-S model=cnn``): keep those
  values and stamp the hash.
- When it matches, ``conf/`` has not changed: keep the file as it is.

Run ``python -m pipeline.params`` by hand after editing ``conf/`` to see the new values
before ``dvc repro`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from pipeline.config import (
    compose_config,
    conf_hash,
    flatten,
    load_params,
    load_raw_params,
    one_line,
    to_container,
)
from pipeline.errors import ConfigError
from pipeline.io import write_text

PARAMS_FILE = Path("params.yaml")
HASH_KEY = "conf_hash"
# Sections dvc.yaml interpolates: DVC has read them before this stage runs.
GRAPH_KEYS = ("paths", "dvc")


class PathsChanged(RuntimeError):
    """params.yaml was updated, but DVC already read the old paths or graph from it."""


HEADER = (
    "# Generated from conf/ by `python -m pipeline.params` (the first DVC stage): edit conf/,\n"
    "# not this file. DVC reads the values that every stage uses from here.\n"
)


def update_params(path: Path = PARAMS_FILE, overrides: list[str] | None = None) -> str:
    """Bring ``path`` up to date with ``conf/``; return what was done ("composed", "kept")."""
    current_hash = conf_hash()
    if path.exists() and not overrides:
        existing = to_container(load_raw_params(path))
        stamped = existing.get(HASH_KEY)
        if stamped == current_hash:
            load_params(path)  # checked: the file may have been edited by hand
            return "kept"
        if stamped is None:  # composed by `dvc exp run`: keep its values, stamp the hash
            _write(path, to_container(load_params(path)), current_hash)
            return "kept"
    composed = to_container(compose_config(overrides or []))
    previous = to_container(load_raw_params(path)) if path.exists() else None
    _write(path, composed, current_hash)
    changed = [key for key in GRAPH_KEYS if previous and previous.get(key) != composed.get(key)]
    if changed:
        raise PathsChanged(
            f"{path}: the `{'` and `'.join(changed)}` section changed; dvc.yaml takes its "
            "paths and stages from this file, so run `dvc repro` again to use the new ones"
        )
    return "composed"


def _write(path: Path, values: dict, current_hash: str) -> None:
    from pipeline.tracking import secrets_in

    for key, value in flatten(values).items():
        if secrets_in(value):
            raise ConfigError(
                f"{key}: holds a password, and {path} is committed with the code; leave it "
                "out of the URL and give it through the environment (PGPASSWORD or "
                "~/.pgpass for PostgreSQL, MLFLOW_TRACKING_PASSWORD for an MLflow server)"
            )
    values = {k: v for k, v in values.items() if k != HASH_KEY}
    values[HASH_KEY] = current_hash
    write_text(path, HEADER + yaml.safe_dump(values, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=mlp")
    parser.add_argument("--output", type=Path, default=PARAMS_FILE)
    args = parser.parse_args()
    try:
        action = update_params(args.output, args.overrides)
    except ConfigError as err:
        print(f"config error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    except PathsChanged as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.output}: {action} from conf/")


if __name__ == "__main__":
    main()
