"""Start-up: a stage imports MLflow, Optuna, scikit-learn, matplotlib (and never PyTorch)
only when it uses them, so that ``python -m pipeline.<stage> --help`` answers at once.

An assertion on the modules a fresh interpreter holds after ``--help``, not on time (speed
is measured in ``benchmarks/bench_pipeline.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.environ import child_environment

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("prepare", "augment", "search", "train", "evaluate")
HEAVY = ("mlflow", "optuna", "sklearn", "matplotlib", "torch", "scipy", "skops")

# Runs the stage's module as `python -m` does, with --help, then lists the heavy packages
# imported meanwhile (--help ends with SystemExit).
PROBE = """
import json, runpy, sys
sys.argv = [sys.argv[0], "--help"]
try:
    runpy.run_module("pipeline.{stage}", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
heavy = {heavy!r}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))))
"""


def imported_by_help(stage: str) -> tuple[list[str], str]:
    code = PROBE.format(stage=stage, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    help_text, _, last = out.rstrip("\n").rpartition("\n")
    return json.loads(last), help_text


@pytest.mark.parametrize("stage", STAGES)
def test_help_imports_no_heavy_package(stage):
    heavy, help_text = imported_by_help(stage)
    assert f"usage: python -m pipeline.{stage} " in help_text
    assert "  model: " in help_text and "[cnn]" in help_text  # groups, defaults marked
    assert heavy == [], f"python -m pipeline.{stage} --help imports {heavy}"


# --- search workers warm up while the stage sets up -------------------------------------------
def heavy_modules_here() -> list[str]:
    """In a worker process: which of the heavy packages it holds."""
    return sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))


def test_search_workers_are_warm_before_their_first_task():
    from pipeline.search.pool import worker_pool

    with worker_pool(1, None) as pool:
        assert pool is None  # one worker: the stage's own process, no pool
    with worker_pool(2, None) as pool:
        # The pool runs its one process's tasks in order: the warm-up first.
        loaded = pool.submit(heavy_modules_here).result(timeout=120)
    assert {"optuna", "sklearn"} <= set(loaded), loaded
    assert "mlflow" not in loaded and "matplotlib" not in loaded and "torch" not in loaded
