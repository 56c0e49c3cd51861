"""Shared fixtures: a composed config pointing every path into a temporary directory, and a
check that the test session leaves the project's own stores alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
# What the pipeline writes in the project when run there; tests must write elsewhere.
PROJECT_STORES = ("mlruns", "mlflow.db", "mlartifacts", "optuna.db")


def stage_overrides(root: Path, *extra: str) -> list[str]:
    """Overrides sending every output of the pipeline under ``root`` (MLflow's artifacts
    go beside its database there, see ``tracking.Tracker``)."""
    return [
        f"paths.data={root / 'data'}",
        f"paths.models={root / 'models'}",
        f"paths.reports={root / 'reports'}",
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
        *extra,
    ]


@pytest.fixture
def make_config(tmp_path):
    """``make_config("model=mlp", ...)``: the composed config with outputs under tmp_path."""

    def make(*extra: str, root: Path | None = None):
        return compose_config(stage_overrides(root or tmp_path, *extra))

    return make


def _store_files() -> set[str]:
    found = set()
    for name in PROJECT_STORES:
        path = ROOT / name
        if path.is_file():
            found.add(name)
        elif path.is_dir():
            found.update(str(p.relative_to(ROOT)) for p in path.rglob("*"))
    return found


@pytest.fixture(scope="session", autouse=True)
def project_stores_untouched():
    """Fails the session (an error at teardown) when a test wrote into the project's
    ``mlruns/``, ``mlflow.db`` or ``optuna.db``."""
    before = _store_files()
    yield
    new = sorted(_store_files() - before)
    assert not new, f"tests wrote into the project's stores: {new[:10]}"


@pytest.fixture(autouse=True)
def forget_secrets():
    """Each test starts with no remembered password (pipeline.tracking.remember_secrets)."""
    from pipeline import tracking

    yield
    tracking._known_secrets.clear()
