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


def test_a_case_that_does_not_time_preparation_prepares_its_data_once(tmp_path, monkeypatch):
    from benchmarks import bench_pipeline

    ran: list[str] = []

    def fake_run(args, cwd):
        ran.append(args[1])
        data = Path(next(a for a in args if a.startswith("paths.data=")).split("=", 1)[1])
        output = {"pipeline.prepare": "prepared", "pipeline.augment": "augmented"}[args[1]]
        (data / output).mkdir(parents=True, exist_ok=True)
        (data / output / "train.npz").touch()
        return 1.0, 1.0

    monkeypatch.setattr(bench_pipeline, "timed_run", fake_run)
    args = bench_pipeline.parse_args(["--cases", "fashion-cnn"])
    bench_pipeline.prepare_untimed(tmp_path, "fashion-cnn", args)
    bench_pipeline.prepare_untimed(tmp_path, "fashion-cnn", args)  # the data is there now
    bench_pipeline.prepare_untimed(tmp_path, "fashion-mlp", args)  # times its own
    assert ran == ["pipeline.prepare", "pipeline.augment"]
