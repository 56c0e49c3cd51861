"""pipeline/mlflow_compat.py against the installed MLflow: a new major, or an internal that
moved, fails here instead of silently costing every logged model its 1.2 s again."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.utils import requirements_utils

from pipeline import mlflow_compat


def test_the_installed_mlflow_is_a_known_major():
    assert mlflow_compat.known_version(), (
        f"mlflow {mlflow.__version__}: check pipeline/mlflow_compat.py against it and add its "
        "major to KNOWN_MAJORS"
    )


@pytest.mark.parametrize("version", ["4.0.0", "2.22.1", "dev"])
def test_other_versions_are_unknown(version):
    assert not mlflow_compat.known_version(version)


def test_warming_builds_the_map_the_requirement_check_reads(monkeypatch):
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    mlflow_compat.warm_requirement_check()
    modules = requirements_utils._MODULES_TO_PACKAGES
    assert modules is not None and "numpy" in modules["numpy"]
