"""Pipeline stage benchmark: each stage's wall time with MLflow tracking on and off.

What is measured
----------------
Every figure is the wall time of one stage run as a user runs it, ``python -m
pipeline.<stage> ...`` in a child process (interpreter start-up, imports, reading inputs,
the work, writing outputs, MLflow), with every path in a temporary directory: data, models,
reports, the Optuna storage (a fresh one per search) and the MLflow store (a SQLite file,
``tracking.uri=sqlite:///<tmp>/mlflow.db``; no server, so no server start-up). The same
stage runs with tracking on and with ``tracking=off`` in turns (off, on, off, on, ...: ABAB),
``--repeats`` times each; a table row gives the median of each and the ratio on / off of the
medians, for wall time and for CPU time (user + system, the stage's worker processes
included), with the 1-minute load average before each run (min-max), since the machine may
be shared.

Cases
-----
- ``default``: the default config (``mnist_sample``, ``augment=shifts``, ``model=cnn``):
  prepare, augment, search (``--search-trials`` trials of ``--search-epochs`` epochs on
  ``--search-samples`` images, 2 workers, the default pruner), train (``train.use_search=
  false``, ``--epochs`` epochs) and evaluate (750 test images).
- ``fashion-mlp`` and ``fashion-cnn``: Fashion-MNIST (``data=fashion_mnist augment=none``,
  50,000 / 10,000 / 10,000 images, from /usr/share/datasets/fashion-mnist): prepare, then
  train (``model=mlp_fashion`` / ``model=cnn``, ``--epochs`` epochs) and evaluate (10,000
  test images).

Prepare and augment do not track: they run once per repeat, in the "off" column.

Start-up
--------
- ``python -m pipeline.train --help`` and ``python -m pipeline.search --help``: median of
  ``--repeats`` runs (Hydra composes the config and prints it; nothing else loads).
- A search worker's start-up: from submitting the worker to a spawned process (as the
  search stage does for its second worker) to the point where its first trial would start:
  the imports, the study opened twice (as ``run_worker`` does), the training and validation
  data loaded (``Objective``), and with tracking on the MLflow store opened (the first
  trial's nested run does it). "Cold": a fresh process; "after warm-up": a process that
  has run ``pipeline.search.pool.warm_up`` first, as the stage's workers do while the stage
  creates the study and its MLflow parent run.

Usage::

    python benchmarks/bench_pipeline.py                   # everything, --epochs 3
    python benchmarks/bench_pipeline.py --quick           # 1 epoch, small search, 2 repeats
    python benchmarks/bench_pipeline.py --cases fashion-mlp --epochs 10 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/bench_pipeline.py` from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.common import render_markdown, render_text, write_atomic  # noqa: E402

DEFAULT_OUTPUT = ROOT / "reports" / "pipeline_benchmarks.md"
CASES = {
    "default": [],
    "fashion-mlp": ["data=fashion_mnist", "augment=none", "model=mlp_fashion"],
    "fashion-cnn": ["data=fashion_mnist", "augment=none", "model=cnn"],
}
# Stages each case runs; Fashion-MNIST's data is prepared once, by the first of its cases.
CASE_STAGES = {
    "default": ("prepare", "augment", "search", "train", "evaluate"),
    "fashion-mlp": ("prepare", "augment", "train", "evaluate"),
    "fashion-cnn": ("train", "evaluate"),
}
TRACKED = ("search", "train", "evaluate")


@dataclass
class Row:
    case: str
    what: str
    off: list[float] = field(default_factory=list)  # wall seconds
    on: list[float] = field(default_factory=list)
    off_cpu: list[float] = field(default_factory=list)  # CPU seconds (user + system)
    on_cpu: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)

    def cells(self) -> list[str]:
        load = f"{min(self.loads):.1f}-{max(self.loads):.1f}" if self.loads else ""
        runs = max(len(self.off), len(self.on))
        return [self.case, self.what, *_pair(self.off, self.on),
                *_pair(self.off_cpu, self.on_cpu), str(runs), load]  # fmt: skip


HEADERS = ["case", "stage", "off s", "on s", "on / off", "off CPU s", "on CPU s",
           "CPU on / off", "runs", "load"]  # fmt: skip


def _pair(off: list[float], on: list[float]) -> list[str]:
    """Medians of the two modes and the ratio of the medians."""
    off_median = statistics.median(off) if off else None
    on_median = statistics.median(on) if on else None
    ratio = f"{on_median / off_median:.2f}x" if on_median and off_median else ""
    return [_seconds(off_median), _seconds(on_median), ratio]


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def load_average() -> float:
    return os.getloadavg()[0]


def child_environment() -> dict[str, str]:
    """This environment with this checkout first on the path, without MLFLOW_*/NNDL_*
    settings (each run chooses its stores), Python's warnings off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NNDL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONWARNINGS"] = "ignore"
    return env


def timed_run(args: Sequence[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, with the processes it waited for, e.g. search
    workers) of ``python args...`` in ``cwd``; raises with its stderr if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=child_environment(), capture_output=True,
        text=True, timeout=3600,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def stage_overrides(work: Path, case: str, mode: str, repeat: int, args) -> list[str]:
    """Paths of one case and mode under ``work``: the data shared by the modes (and by
    the Fashion-MNIST cases), models, reports and the Optuna storage per mode, one MLflow
    store per case."""
    data = work / ("fashion" if case.startswith("fashion") else case) / "data"
    own = work / case / mode
    tracking = ["tracking=off"] if mode == "off" else [
        f"tracking.uri=sqlite:///{work / case / 'mlflow.db'}"]  # fmt: skip
    return [
        *CASES[case],
        f"paths.data={data}",
        f"paths.models={own / 'models'}",
        f"paths.reports={own / 'reports'}",
        f"search.storage=sqlite:///{own / f'optuna-{repeat}.db'}",
        f"search.n_trials={args.search_trials}",
        f"search.epochs={args.search_epochs}",
        f"search.max_train_samples={args.search_samples}",
        "train.use_search=false",
        f"train.epochs={args.epochs}",
        *tracking,
    ]


def prepare_untimed(work: Path, case: str, args) -> None:
    """Run prepare and augment (untimed) for a case that does not time them, when no case
    before it has written their data (``--cases fashion-cnn`` alone)."""
    overrides = stage_overrides(work, case, "off", 0, args)
    data = Path(next(o for o in overrides if o.startswith("paths.data=")).split("=", 1)[1])
    for stage, output in (("prepare", "prepared"), ("augment", "augmented")):
        if stage not in CASE_STAGES[case] and not (data / output / "train.npz").is_file():
            timed_run(["-m", f"pipeline.{stage}", *overrides], work)


def bench_cases(work: Path, args) -> list[Row]:
    rows: list[Row] = []
    for case in args.cases:
        prepare_untimed(work, case, args)
        stage_rows = {stage: Row(case, stage) for stage in CASE_STAGES[case]}
        rows += stage_rows.values()
        for repeat in range(args.repeats):
            for stage in CASE_STAGES[case]:
                modes = ("off", "on") if stage in TRACKED else ("off",)
                for mode in modes if repeat % 2 == 0 else modes[::-1]:
                    row = stage_rows[stage]
                    row.loads.append(load_average())
                    overrides = stage_overrides(work, case, mode, repeat, args)
                    seconds, cpu = timed_run(["-m", f"pipeline.{stage}", *overrides], work)
                    getattr(row, mode).append(seconds)
                    getattr(row, f"{mode}_cpu").append(cpu)
                    print(f"  {case} {stage} tracking {mode}: {seconds:.2f} s, CPU {cpu:.2f} s "
                          f"(load {row.loads[-1]:.1f})", flush=True)  # fmt: skip
    return rows


def bench_help(work: Path, repeats: int) -> list[Row]:
    rows = []
    for stage in ("train", "search"):
        row = Row("start-up", f"`python -m pipeline.{stage} --help`")
        for _ in range(repeats):
            row.loads.append(load_average())
            seconds, cpu = timed_run(["-m", f"pipeline.{stage}", "--help"], work)
            row.off.append(seconds)
            row.off_cpu.append(cpu)
        print(f"  {stage} --help: {statistics.median(row.off):.2f} s", flush=True)
        rows.append(row)
    return rows


# --- a search worker's start-up --------------------------------------------------------------
def worker_ready(cfg_container: dict, submitted: float) -> dict[str, float]:
    """In a spawned process: what ``run_worker`` does before its first trial starts.
    Returns seconds since ``submitted`` (the parent's clock: the same machine) at the end of
    the imports and when ready."""
    from omegaconf import OmegaConf

    from pipeline.search.objective import Objective
    from pipeline.search.settings import epoch_budget, validate_settings
    from pipeline.search.study import create_study, make_pruner, make_sampler

    imported = time.time() - submitted
    cfg = OmegaConf.create(cfg_container)
    space = validate_settings(cfg)
    probe = create_study(cfg)
    create_study(cfg, sampler=make_sampler(cfg, int(cfg.seed) + len(probe.trials)),
                 pruner=make_pruner(cfg, epoch_budget(cfg, space)))  # fmt: skip
    objective = Objective(cfg, None, space)
    if objective.tracker.active:
        objective.tracker._open()  # the first trial's nested run opens the store
    return {"imports": imported, "ready": time.time() - submitted}


def bench_worker(work: Path, args) -> list[Row]:
    """The default case's search worker (its data must be prepared and augmented): cold (a
    fresh spawned process) and after the warm-up the stage starts its workers with
    (``pipeline.search.pool``: the imports overlap the stage's own set-up)."""
    from pipeline.config import compose_config, to_container
    from pipeline.search.pool import warm_up
    from pipeline.search.study import create_study

    rows = [Row("start-up", "search worker, cold: imports"),
            Row("start-up", "search worker, cold: ready for trial 1"),
            Row("start-up", "search worker, after warm-up: ready")]  # fmt: skip
    context = get_context("spawn")
    for repeat in range(args.repeats):
        for mode in ("off", "on") if repeat % 2 == 0 else ("on", "off"):
            cfg = compose_config(stage_overrides(work, "default", mode, 100 + repeat, args))
            create_study(cfg)  # the stage creates the study before its workers start
            load = load_average()
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                cold = pool.submit(worker_ready, to_container(cfg), time.time()).result()
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                uri = None if mode == "off" else str(cfg.tracking.uri)
                pool.submit(warm_up, uri, True).result()
                warm = pool.submit(worker_ready, to_container(cfg), time.time()).result()
            figures = (cold["imports"], cold["ready"], warm["ready"])
            for row, value in zip(rows, figures, strict=True):
                row.loads.append(load)
                getattr(row, mode).append(value)
            print(f"  search worker tracking {mode}: cold imports {figures[0]:.2f} s, ready "
                  f"{figures[1]:.2f} s; after warm-up ready {figures[2]:.2f} s "
                  f"(load {load:.1f})", flush=True)  # fmt: skip
    return rows


# --- report ----------------------------------------------------------------------------------
def report(rows: list[Row], args, seconds: float) -> str:
    table = render_markdown(HEADERS, [r.cells() for r in rows])
    command = " ".join(["python benchmarks/bench_pipeline.py", *args.argv])
    about = (
        f"Measured with `{command}` ({seconds / 60:.0f} min, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}). Each stage ran as `python -m pipeline.<stage>` in a child "
        "process, all paths in a temporary directory, MLflow in a SQLite file there (no "
        "server). Tracking off and on ran in turns (ABAB); a row gives the medians of "
        f"{args.repeats} runs each and the ratio of the medians, for wall time and for CPU "
        "time (user + system of the stage and its worker processes: less sensitive than wall "
        'time to other processes on the machine); "load" is the range of the 1-minute load '
        "average before the runs (the machine may be shared: compare figures within a row). "
        f"Training: `train.epochs={args.epochs}`, `train.use_search=false`; search: "
        f"{args.search_trials} trials of {args.search_epochs} epochs on {args.search_samples} "
        "images, 2 workers. Worker start-up: seconds from submitting a worker to a spawned "
        "process until its first trial could start (imports; studies opened, data loaded; "
        'the MLflow store opened when tracking is on), in a fresh process ("cold") and in '
        "one warmed up as the search stage's are. See the docstring of "
        "`benchmarks/bench_pipeline.py` for what each figure includes."
    )
    title = "# Pipeline stages: wall time with MLflow tracking on and off"
    return f"{title}\n\n{textwrap.fill(about, 92)}\n\n{table}\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--epochs", type=int, default=3, help="train.epochs of every training")
    parser.add_argument("--repeats", type=int, default=3, help="runs per stage and mode")
    parser.add_argument("--search-trials", type=int, default=6, help="search.n_trials")
    parser.add_argument("--search-epochs", type=int, default=3, help="search.epochs")
    parser.add_argument("--search-samples", type=int, default=3000, help="max_train_samples")
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch, 2 repeats, a search of 3 trials of 1 epoch")  # fmt: skip
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up rows")
    parser.add_argument("--workdir", type=Path, help="keep data, models and stores here")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="Markdown report")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.epochs, args.repeats = 1, 2
        args.search_trials, args.search_epochs, args.search_samples = 3, 1, 1000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = [] if args.no_startup else bench_help(work, args.repeats)
        rows += bench_cases(work, args)
        if not args.no_startup and "default" in args.cases:
            rows += bench_worker(work, args)
    seconds = time.perf_counter() - started
    print(render_text(HEADERS, [r.cells() for r in rows]))
    write_atomic(args.output, report(rows, args, seconds))
    print(f"-> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
