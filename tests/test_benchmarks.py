"""The benchmark scripts import and run (their figures are read by people, not asserted)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from benchmarks import bench_fidelity

MODULES = sorted(p.stem for p in (Path(__file__).parents[1] / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_every_benchmark_imports_and_answers_help(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    parse = getattr(module, "parse_args", None) or module.main
    with pytest.raises(SystemExit) as exit_info:
        parse(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_fidelity_retrains_the_trials_and_ranks_them(tmp_path, capsys):
    report = tmp_path / "fidelity.md"
    overrides = ["data=digits", "augment=none", "model=mlp", "search.epochs=2",
                 "search.workers=1", "train.epochs=3"]  # fmt: skip
    assert bench_fidelity.main(["--trials", "4", "--output", str(report), *overrides]) == 0
    text = report.read_text()
    assert "| 0 | COMPLETE |" in text  # the baseline trial, retrained
    assert "rank correlation, all retrained trials (4): Spearman" in text
    assert "search's pick: trial" in text and "regret" in text
