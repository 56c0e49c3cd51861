"""The layers of the package: low layers load no heavy library, and each layer imports only
the layers below it (io <- data, nn <- estimators <- artifacts <- stages)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import CNNClassifier, MLPClassifier, MLPRegressor

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
HEAVY = ("sklearn", "mlflow", "optuna", "hydra", "pipeline.estimators", "pipeline.artifacts")


@pytest.mark.parametrize(
    "module",
    [
        "pipeline",
        "pipeline.io",
        "pipeline.nn",
        "pipeline.data",
        "pipeline.data.idx",
        "pipeline.data.download",
        "pipeline.data.transforms",
    ],
)
def test_low_layers_load_neither_sklearn_nor_mlflow(module):
    code = (
        f"import sys, {module}\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"import {module} loads {result.stdout.split()}"


def test_the_package_still_exports_the_estimators_lazily():
    code = "import pipeline, sys; pipeline.MLPRegressor; print('sklearn' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.stdout.strip() == "True", result.stderr
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import pipeline

        pipeline.nothing  # noqa: B018


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_io_imports_nothing_from_the_package():
    assert not {m for m in imported_modules(PACKAGE / "io.py") if m.startswith("pipeline")}


@pytest.mark.parametrize("path", sorted((PACKAGE / "data").glob("*.py")), ids=lambda p: p.name)
def test_data_imports_io_not_artifacts_or_estimators(path):
    modules = imported_modules(path)
    assert not modules & {"pipeline.artifacts", "pipeline.estimators", "pipeline"}
    assert {m for m in modules if m.startswith("pipeline")} <= {
        "pipeline.io",
        "pipeline.errors",
        "pipeline.data",
        *(f"pipeline.data.{p.stem}" for p in (PACKAGE / "data").glob("*.py")),
    }


def test_artifacts_use_no_private_estimator_method_but_the_state_pair():
    """load_model / save_model talk to an estimator through _get_state / _set_state only."""
    tree = ast.parse((PACKAGE / "artifacts.py").read_text())
    private = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "estimator"
        and node.attr.startswith("_")
        and not node.attr.endswith("__")
    }
    assert private == {"_get_state", "_set_state"}


@pytest.mark.parametrize(
    ("estimator", "y"),
    [
        (MLPClassifier(epochs=1, random_state=0), [0, 1] * 10),
        (CNNClassifier(conv_layers=((2, 2, 1),), epochs=1, random_state=0), [0, 1] * 10),
        (MLPRegressor(epochs=1, random_state=0), np.linspace(0, 1, 20)),
    ],
    ids=lambda v: type(v).__name__,
)
def test_the_fitted_attributes_list_is_complete(estimator, y):
    """``_fitted_attributes`` (plus the network) is exactly what fitting sets, so that
    saving, loading and undoing a failed fit cannot miss one."""
    X = np.random.default_rng(0).random((20, 9))
    estimator.fit(X, y)
    public = {name for name in vars(estimator) if name.endswith("_") and name[0] != "_"}
    assert public == {*estimator._fitted_attributes, "network_"}
    state, arrays = estimator._get_state()
    assert set(state) == {name.rstrip("_") for name in estimator._fitted_attributes} | (
        {"classes_dtype"} if hasattr(estimator, "classes_") else set()
    )
    assert set(arrays) == {name for name, _, _ in estimator.network_.parameters()}
