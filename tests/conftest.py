"""Shared fixtures: a composed config pointing every path into a temporary directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import compose_config


def stage_overrides(root: Path, *extra: str) -> list[str]:
    """Overrides sending every output of the pipeline under ``root``."""
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
