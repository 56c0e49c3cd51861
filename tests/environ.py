"""The environment the tests give the pipeline when they run it as a child process."""

from __future__ import annotations

import os


def child_environment() -> dict[str, str]:
    """This process's environment without MLFLOW_* and NNDL_* (each test chooses its own
    stores and conf/, whatever the user has set), with Python's warnings off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NNDL_"))}
    env["PYTHONWARNINGS"] = "ignore"
    return env
