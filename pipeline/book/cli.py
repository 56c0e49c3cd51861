"""The command line of :mod:`pipeline.book`: compose ``conf/`` with ``book=<experiment>``, run
the experiment, write its page.

The experiment group ``conf/book/`` is not in ``conf/config.yaml``'s defaults (the pipeline's
stages do not use it), so ``book=ch1`` is added to the composition as ``+book=ch1``; any other
override (``book.epochs=3``, ``data=digits``, ``tracking=off``) is Hydra's as for every stage.
"""

from __future__ import annotations

import importlib
import shlex
import sys
import time
from pathlib import Path

import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from pipeline.artifacts import ArtifactError
from pipeline.book import EXPERIMENTS
from pipeline.book.page import Page, write_page
from pipeline.book.runner import check_book, make_context
from pipeline.config import compose_config, conf_dir
from pipeline.errors import ConfigError
from pipeline.estimators import DivergenceError
from pipeline.tracking import TrackingError

USAGE = (
    "usage: python -m pipeline.book book=<experiment> [override ...]\n"
    f"experiments: {', '.join(EXPERIMENTS)}"
)


def book_overrides(argv: list[str]) -> list[str]:
    """Hydra overrides for ``argv``: ``book=X`` becomes ``+book=X`` unless ``conf/config.yaml``
    already lists the ``book`` group in its defaults."""
    choices = [a for a in argv if a.split("=", 1)[0].lstrip("+") == "book"]
    if len(choices) != 1:
        raise ConfigError(f"book: name exactly one experiment (book=<name>); got {choices or argv}")
    name = choices[0].split("=", 1)[1]
    if name not in EXPERIMENTS:
        raise ConfigError(f"book: unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
    group = "book=" if _book_in_defaults() else "+book="
    return [group + name if a is choices[0] else a for a in argv]


def _book_in_defaults() -> bool:
    primary = yaml.safe_load((conf_dir() / "config.yaml").read_text(encoding="utf-8")) or {}
    for entry in primary.get("defaults", []):
        keys = entry if isinstance(entry, dict) else {entry: None}
        if any(str(k).split("@")[0].removeprefix("optional ") == "book" for k in keys):
            return True
    return False


def run_experiment(cfg: DictConfig, command: str) -> Page:
    """Run the experiment ``cfg.book.name`` and write its page; returns the page."""
    name = str(cfg.book.name)
    if name not in EXPERIMENTS:
        raise ConfigError(
            f"book.name: unknown experiment {name!r}; choose from {list(EXPERIMENTS)}"
        )
    module = importlib.import_module(EXPERIMENTS[name])
    check_book(cfg.book, getattr(module, "ESTIMATOR", None))
    started = time.perf_counter()
    ctx = make_context(cfg, needs_data=getattr(module, "NEEDS_DATA", True))
    ctx.command = command
    page = module.run(ctx)
    page.wall_seconds = time.perf_counter() - started
    out_dir = Path(cfg.book.out_dir)
    path = write_page(page, out_dir)
    print(f"{name}: {page.reading}\n-> {path} ({page.wall_seconds:.0f} s)")
    return page


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if argv else 2)
    try:
        cfg = compose_config(book_overrides(argv))
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        print("error: " + "; ".join(str(err).splitlines()), file=sys.stderr)  # one line
        sys.exit(2)
    command = "python -m pipeline.book " + shlex.join(argv)
    try:
        run_experiment(cfg, command)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (ArtifactError, DivergenceError, TrackingError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
