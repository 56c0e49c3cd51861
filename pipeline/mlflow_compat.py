"""The one use of MLflow's private API in the project: building its package map ahead.

Saving a model with explicit pip requirements, MLflow checks them against the installed
packages (``warn_dependency_requirement_mismatches``), and to do so first maps the modules
of every installed distribution (``importlib.metadata.packages_distributions()``: about
1.2 s, kept for the life of the process). MLflow has no public way to build that map ahead;
:func:`warm_requirement_check` does, in the tracking process while the stage trains
(:meth:`pipeline.tracking.Tracker.preload`, :mod:`pipeline.tracking_process`).

Written against the MLflow majors in :data:`KNOWN_MAJORS`. On another version it does
nothing (MLflow then builds the map when the model is saved, as it always did), and
``tests/test_mlflow_compat.py`` fails, so that the function is checked against it.
"""

from __future__ import annotations

KNOWN_MAJORS = (3,)


def known_version(version: str | None = None) -> bool:
    """Whether MLflow ``version`` (default: the installed one) is one this module knows."""
    if version is None:
        import mlflow

        version = mlflow.__version__
    major = version.split(".")[0]
    return major.isdigit() and int(major) in KNOWN_MAJORS


def warm_requirement_check() -> None:
    """Build the module -> distribution map MLflow's requirement check needs."""
    if not known_version():
        return
    from mlflow.utils import requirements_utils

    requirements_utils._init_modules_to_packages_map()
