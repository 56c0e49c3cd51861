"""Search stage benchmark: pruning savings, worker scaling, and load on a shared study.

What is measured
----------------
Every figure comes from ``pipeline.search.run(cfg)``, the search stage itself, on a config
composed from ``conf/`` (``pipeline.config.compose_config``) with every path sent into a
temporary directory and ``tracking=off`` (MLflow would add its own I/O to every trial).
Each measured search gets a fresh study in a fresh storage, so nothing is resumed.

1. **Pruning** (issue 5): the same budget (``--trials`` trials, the same sampler seed, one
   worker so that the trial sequence is reproducible) with the default pruner of
   ``conf/search/default.yaml`` (successive halving, epochs as the resource, its settings there;
   ``--pruner`` picks another) and with ``none``. Reported: trials complete / pruned /
   failed, total epochs trained, wall time, best validation accuracy, and the ratios.
   Epochs are counted from the study: every epoch a trial trains ends with one validation
   accuracy reported to Optuna, so a trial's epochs = its number of intermediate values
   (the stage's own ``epochs_trained`` is printed as a WARNING where it disagrees).
   Targets: pruning trains at most half the epochs, and its best validation accuracy is at
   most 0.3 points below the best without pruning.
2. **Workers** (issue 5): the same budget (``--worker-trials``) with ``search.workers=1`` and
   ``search.workers=2``. So that both do the same work, these runs use no pruner and a single
   batch size (``--worker-batch``; the time of an epoch depends on it, not on eta or lambda):
   every trial trains exactly ``--epochs`` epochs. Reported: wall time and trials per minute
   of each and the ratio, also after the workers' start-up. Target: 2 workers at least 1.6x
   the trials per minute of one (on 2 cores).
3. **Load** (issue 7, ``--load``, instead of 1 and 2): ``--load-trials`` (200) short trials on
   ``digits`` (``augment=none``, ``model=mlp``, 2 epochs per trial on all 1,257 training
   images; default space, sampler and pruner) with 2 workers on SQLite, and on PostgreSQL
   when ``--postgres-url URL`` or the environment variable ``POSTGRES_URL`` is given (a study
   with a unique name, deleted afterwards). Reported: trials per minute, and checks: the
   study holds exactly the requested number of trials, numbered 0..n-1 without duplicates,
   all finished, none failed because "database is locked"; the number of failed trials and
   their reasons are printed. ``--load-mlflow`` also turns tracking on (a SQLite MLflow store
   per search in the temp dir) and checks that every trial has exactly one nested MLflow run.

How
---
Data: ``mnist_sample`` (5,000 real MNIST digits; 3,500 training images) is prepared once and
augmented once with the default ``augment=shifts`` (the book's one-pixel shifts: 17,500
training images), i.e. the data the pipeline's search stage searches by default; every
trial trains on the stage's random subset of ``--max-train-samples`` of them and is scored
on the 750 validation images after every epoch. The model is ``--model`` (``mlp``: the
chapter-3 network [784, 100, 10]; a trial of 8 epochs on 10,000 images takes 1 to 3 s of
one core, by batch size); the searched space is ``conf/search/default.yaml``'s (eta,
lambda, batch size), with ``search.epochs=--epochs``, ``search.threads=1``. Everything else
is the composed default config. An untimed two-trial search runs first (lazy imports, the
data files in the page cache).

Columns: "wall s" is the stage's own ``seconds``, from starting the worker(s) to the last
trial's end (it includes spawning the worker processes, which import the pipeline and load
the data, but not creating the study first, nor writing ``trials.csv``, best params and
plots afterwards); "total s" is the whole ``search.run`` call; "start-up s" runs from calling
``search.run`` to the first trial's start; "median trial s" is the median duration of the
finished trials; "CPU s" is the user + system CPU time of this process and its worker
processes during the call, and "cores busy" = CPU s / total s. "trials/min" = finished
trials (complete + pruned) / wall s; "after start-up" divides by the span from the first
trial's start to the last trial's end instead. The machine may be shared: the 1-minute
load average is printed before and after every search, and a caveat when the searches did
not get the cores; compare figures only within one run.

Failure reasons: Optuna 5 stores no reason with a failed trial; it logs one ("Trial N failed
with parameters ... because of the following error: ...") on stderr. The benchmark sends
file descriptors 1 and 2 (inherited by the spawned workers) to a log file during each
search and reads the reasons from there; a failed trial without such a line was failed by
the heartbeat check (its worker stopped sending heartbeats).

Targets are printed as PASS or BELOW; the exit status is 0 whatever the figures. It is 1
only when a ``--load`` correctness check fails (wrong trial count, duplicate numbers,
"database is locked" failures, or a search that raised).

Run ``python benchmarks/bench_search.py --help`` for the options; ``--output PATH`` also
writes the report as Markdown (atomically, ``pipeline.artifacts.write_text``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import TrialState

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import render_markdown, render_text  # noqa: E402
from pipeline import augment, prepare, search  # noqa: E402
from pipeline.artifacts import write_text  # noqa: E402
from pipeline.config import compose_config  # noqa: E402
from pipeline.config.schema import PrunerName  # noqa: E402
from pipeline.search.recovery import FINISHED  # noqa: E402
from pipeline.tracking import mask_secrets  # noqa: E402

PRUNING_EPOCH_RATIO = 0.5  # epochs with pruning / without, at most
PRUNING_ACCURACY_POINTS = 0.3  # best accuracy lost to pruning, at most (percentage points)
WORKER_SPEEDUP = 1.6  # trials/min of 2 workers / 1 worker, at least
LOCKED = "database is locked"
FAILED_LINE = re.compile(
    r"Trial (?P<number>\d+) failed with parameters: .*? "
    r"because of the following error: (?P<reason>.*)\.$"
)
HEADERS = (
    "search",
    "workers",
    "pruner",
    "trials C/P/F",
    "epochs",
    "wall s",
    "total s",
    "start-up s",
    "median trial s",
    "CPU s",
    "cores busy",
    "trials/min",
    "trials/min after start-up",
    "best val acc",
    "load avg",
)


# --- one measured search -------------------------------------------------------------------
@dataclass
class Measured:
    """One ``search.run`` call and what its study holds afterwards."""

    label: str
    workers: int
    pruner: str
    requested: int
    wall_s: float  # the stage's own ``seconds`` (workers only); total_s if it raised
    total_s: float  # the whole search.run call
    epochs: int  # counted from the per-epoch values the trials reported to Optuna
    stage_epochs: int | None  # the stage's own ``epochs_trained`` (None if it raised)
    best_value: float | None
    states: Counter
    numbers: list[int]
    fail_reasons: dict[int, str]
    load_before: float
    load_after: float
    startup_s: float | None  # from calling search.run to the first trial's start
    median_trial_s: float | None  # median duration of the finished trials
    cpu_s: float  # user + system CPU of this process and its workers during search.run
    span_s: float | None  # from the first trial's start to the last trial's end
    error: str | None = None
    log_path: Path | None = None
    mlflow_children: Counter | None = None  # trial number -> nested MLflow runs

    @property
    def finished(self) -> int:
        return self.states[TrialState.COMPLETE] + self.states[TrialState.PRUNED]

    @property
    def trials_per_minute(self) -> float:
        return 60.0 * self.finished / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def steady_trials_per_minute(self) -> float:
        """Finished trials per minute of the trials' own span (no worker start-up)."""
        return 60.0 * self.finished / self.span_s if self.span_s else float("nan")

    @property
    def cores_busy(self) -> float:
        """Average cores the search kept busy: CPU seconds / seconds of the call."""
        return self.cpu_s / self.total_s if self.total_s > 0 else float("nan")

    def cells(self) -> list[str]:
        s = self.states
        best = "-" if self.best_value is None else f"{100 * self.best_value:.2f}%"
        return [
            self.label + (" (ERROR)" if self.error else ""),
            str(self.workers),
            self.pruner,
            f"{s[TrialState.COMPLETE]}/{s[TrialState.PRUNED]}/{s[TrialState.FAIL]}",
            str(self.epochs),
            f"{self.wall_s:.1f}",
            f"{self.total_s:.1f}",
            "-" if self.startup_s is None else f"{self.startup_s:.1f}",
            "-" if self.median_trial_s is None else f"{self.median_trial_s:.2f}",
            f"{self.cpu_s:.1f}",
            f"{self.cores_busy:.2f}",
            f"{self.trials_per_minute:.1f}",
            f"{self.steady_trials_per_minute:.1f}",
            best,
            f"{self.load_before:.2f} -> {self.load_after:.2f}",
        ]


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send file descriptors 1 and 2 to ``path``: this process's output and that of every
    worker it spawns meanwhile (Optuna logs a failed trial's reason there, and nowhere else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "wb") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its waited-for children."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def fail_reasons(log_text: str, failed: Sequence[optuna.trial.FrozenTrial]) -> dict[int, str]:
    """The reason of every failed trial: the one Optuna logged, else one stored with the
    trial (``reason`` / ``fail_reason``), else the heartbeat check failed it (none logged)."""
    logged = {}
    for line in log_text.splitlines():
        match = FAILED_LINE.search(line)
        if match:
            logged[int(match["number"])] = match["reason"]
    return {
        t.number: logged.get(t.number)
        or t.user_attrs.get("reason")
        or t.system_attrs.get("fail_reason")
        or "no error logged: failed by the heartbeat check (worker silent)"
        for t in failed
    }


def measure(
    label: str, base: Sequence[str], run_dir: Path, extra: Sequence[str], storage: str | None
) -> Measured:
    """Run one search on a fresh study; gather timings, states and failure reasons."""
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{run_dir / 'optuna.db'}"
    name = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    cfg = compose_config(
        [
            *base,
            f"paths.reports={run_dir / 'reports'}",
            f"search.storage={storage}",
            f"search.study_name={name}",
            *extra,
        ]
    )
    print(f"  {label}: {cfg.search.n_trials} trials, {cfg.search.workers} worker(s), "
          f"pruner {cfg.search.pruner.name} ...", end="", flush=True)  # fmt: skip
    log_path = run_dir / "output.log"
    error, summary = None, {}
    load_before = os.getloadavg()[0]
    cpu_before = cpu_seconds()
    started_at = datetime.now()  # Optuna stamps trials with the local naive time too
    with output_to(log_path):
        started = time.perf_counter()
        try:
            summary = search.run(cfg)
        except Exception as err:  # reported, never fatal: the study is inspected anyway
            error = f"{type(err).__name__}: {mask_secrets(str(err))}"
        total_s = time.perf_counter() - started
    cpu_s = cpu_seconds() - cpu_before  # the pool's workers are reaped by now
    load_after = os.getloadavg()[0]

    try:
        study = optuna.load_study(study_name=name, storage=search.make_storage(cfg))
        trials = study.get_trials(deepcopy=False)
    except Exception as err:  # the study was never created
        error = error or f"{type(err).__name__}: {mask_secrets(str(err))}"
        trials = []
    states = Counter(t.state for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    durations = [t.duration.total_seconds() for t in trials if t.state in FINISHED and t.duration]
    stage_epochs = summary.get("epochs_trained")
    result = Measured(
        label=label,
        workers=int(cfg.search.workers),
        pruner=str(cfg.search.pruner.name),
        requested=int(cfg.search.n_trials),
        wall_s=float(summary.get("seconds", total_s)),
        total_s=total_s,
        epochs=sum(len(t.intermediate_values) for t in trials),
        stage_epochs=None if stage_epochs is None else int(stage_epochs),
        best_value=max((t.value for t in complete), default=None),
        states=states,
        numbers=[t.number for t in trials],
        fail_reasons=fail_reasons(log_path.read_text(errors="replace"), failed),
        load_before=load_before,
        load_after=load_after,
        startup_s=(min(starts) - started_at).total_seconds() if starts else None,
        median_trial_s=statistics.median(durations) if durations else None,
        cpu_s=cpu_s,
        span_s=(max(ends) - min(starts)).total_seconds() if starts and ends else None,
        error=error,
        log_path=log_path,
    )
    if cfg.tracking.enabled:
        result.mlflow_children = mlflow_children(cfg)
    if storage.startswith(("postgresql", "mysql")):  # a shared server: leave nothing behind
        with contextlib.suppress(Exception):
            optuna.delete_study(study_name=name, storage=storage)
    print(f" {result.wall_s:.1f} s" + (f" ({error})" if error else ""), flush=True)
    return result


def mlflow_children(cfg) -> Counter:
    """Trial number -> nested MLflow runs under the search's parent run(s)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=str(cfg.tracking.uri))
    experiment = client.get_experiment_by_name(str(cfg.tracking.experiment))
    if experiment is None:
        return Counter()
    runs, token = [], None
    while True:
        page = client.search_runs([experiment.experiment_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    parents = {r.info.run_id for r in runs if r.data.tags.get("dvc_stage") == "search"}
    return Counter(
        int(r.data.params["trial"])
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") in parents and "trial" in r.data.params
    )


# --- data ----------------------------------------------------------------------------------
def paths(root: Path) -> list[str]:
    """Overrides sending every output of the pipeline under ``root`` (as tests/conftest.py)."""
    return [
        f"paths.data={root / 'data'}",
        f"paths.models={root / 'models'}",
        f"paths.reports={root / 'reports'}",
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
    ]


def prepare_data(overrides: Sequence[str]) -> str:
    """Prepare and augment once; returns a one-line description."""
    cfg = compose_config(list(overrides))
    with output_to(Path(cfg.paths.data).parent / "prepare.log"):
        counts = prepare.run(cfg)["counts"]
        augmented = augment.run(cfg)
    return (
        f"{cfg.data.name} {counts}, augment={cfg.augment.name}: "
        f"{augmented['n_original']} -> {augmented['n_total']} training images"
    )


# --- the three benchmarks ------------------------------------------------------------------
def warm_up(base: list[str], root: Path) -> None:
    """One small untimed search: lazy imports, the data files in the page cache."""
    extra = ["search.n_trials=2", "search.epochs=1", "search.workers=1", "search.pruner.name=none"]
    measure("warm-up", base, root / "warm-up", extra, None)


def bench_pruning(args, base: list[str], root: Path) -> list[Measured]:
    common = [f"search.n_trials={args.trials}", "search.workers=1"]
    return [
        measure(
            f"pruning-{p}", base, root / f"pruning-{p}", [*common, f"search.pruner.name={p}"], None
        )  # fmt: skip
        for p in (args.pruner, "none")
    ]


def bench_workers(args, base: list[str], root: Path) -> list[Measured]:
    common = [
        f"search.n_trials={args.worker_trials}",
        "search.pruner.name=none",
        f"search.space.batch_size.choices=[{args.worker_batch}]",
    ]
    return [
        measure(
            f"workers-{w}", base, root / f"workers-{w}", [*common, f"search.workers={w}"], None
        )  # fmt: skip
        for w in (1, 2)
    ]


def bench_load(args, root: Path) -> list[Measured]:
    base = [
        *paths(root / "digits"),
        "data=digits",
        "augment=none",
        "model=mlp",
        "search.max_train_samples=null",
        f"search.epochs={args.load_epochs}",
        f"seed={args.seed}",
        "tracking=default" if args.load_mlflow else "tracking=off",
    ]
    if args.load_mlflow:
        base += ["tracking.log_model=false"]
    print(f"data: {prepare_data(base)}", flush=True)
    extra = [f"search.n_trials={args.load_trials}", "search.workers=2"]
    results = []
    storages = [("sqlite", None)]
    if args.postgres_url:
        storages.append(("postgresql", args.postgres_url))
    for name, url in storages:
        run_dir = root / f"load-{name}"
        run_base = base
        if args.load_mlflow:  # one MLflow store per storage, so the counts are per search
            run_base = [*base, f"tracking.uri=sqlite:///{run_dir / 'mlflow.db'}"]
        results.append(measure(f"load-{name}", run_base, run_dir, extra, url))
    return results


# --- verdicts ------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "PASS" if ok else "BELOW"


def pruning_lines(with_pruning: Measured, without: Measured) -> list[str]:
    if with_pruning.best_value is None or without.best_value is None or not without.epochs:
        return ["pruning: no comparison (a search completed no trial; see the errors)"]
    ratio = with_pruning.epochs / without.epochs
    points = 100 * (with_pruning.best_value - without.best_value)
    return [
        f"pruning: epochs with / without = {with_pruning.epochs}/{without.epochs} = "
        f"{ratio:.2f} (target <= {PRUNING_EPOCH_RATIO:g}): {verdict(ratio <= PRUNING_EPOCH_RATIO)}",
        f"pruning: best val accuracy with - without = {points:+.2f} points "
        f"(target >= -{PRUNING_ACCURACY_POINTS:g}): "
        f"{verdict(points >= -PRUNING_ACCURACY_POINTS)}",
        f"pruning: wall time with / without = {with_pruning.wall_s:.1f}/{without.wall_s:.1f} s "
        f"= {with_pruning.wall_s / without.wall_s:.2f}",
    ]


def worker_lines(one: Measured, two: Measured) -> list[str]:
    if not (one.finished and two.finished):
        return ["workers: no comparison (a search finished no trial; see the errors)"]
    ratio = two.trials_per_minute / one.trials_per_minute
    steady = two.steady_trials_per_minute / one.steady_trials_per_minute
    lines = [
        f"workers: trials/min 2 workers / 1 worker = {two.trials_per_minute:.1f}/"
        f"{one.trials_per_minute:.1f} = {ratio:.2f}x (target >= {WORKER_SPEEDUP:g}x on 2 cores, "
        f"{os.cpu_count()} here): {verdict(ratio >= WORKER_SPEEDUP)}",
        f"workers: after start-up (first trial start to last trial end) = "
        f"{two.steady_trials_per_minute:.1f}/{one.steady_trials_per_minute:.1f} = {steady:.2f}x; "
        f"start-up {two.startup_s or 0:.1f} s with 2 workers, {one.startup_s or 0:.1f} s with 1",
    ]
    if two.cores_busy < WORKER_SPEEDUP or one.cores_busy < 0.9:
        lines.append(
            f"workers: CAVEAT: the searches kept only {one.cores_busy:.2f} (1 worker) and "
            f"{two.cores_busy:.2f} (2 workers) cores busy on average (load average "
            f"{one.load_before:.2f} before): other processes held the CPUs, so this ratio "
            "measures the machine's contention more than the stage's scaling"
        )
    return lines


def load_checks(result: Measured) -> list[tuple[str, bool]]:
    """(description, ok) for each correctness check of one load search."""
    n = result.requested
    locked = [k for k, reason in result.fail_reasons.items() if LOCKED in reason]
    checks = [
        (f"search.run ended without an exception ({result.error or 'none'})", result.error is None),
        (f"study holds exactly {n} trials ({len(result.numbers)})", len(result.numbers) == n),
        (
            f"trial numbers unique and 0..{n - 1} "
            f"({len(set(result.numbers))} distinct, {len(result.numbers)} trials)",
            sorted(result.numbers) == list(range(n)),
        ),
        (f"{result.finished} finished (complete + pruned) = {n}", result.finished == n),
        (f'no trial failed with "{LOCKED}" ({len(locked)})', not locked),
    ]
    if result.mlflow_children is not None:
        children = result.mlflow_children
        twice = sorted(k for k, c in children.items() if c > 1)
        missing = sorted(set(result.numbers) - set(children))
        checks.append(
            (
                f"one nested MLflow run per trial ({sum(children.values())} runs, "
                f"missing {missing[:10]}, more than one {twice[:10]})",
                not twice and not missing,
            )
        )
    return checks


def load_lines(results: Sequence[Measured]) -> tuple[list[str], bool]:
    lines, all_ok = [], True
    for r in results:
        lines.append(f"{r.label}: {r.trials_per_minute:.1f} trials/min ({r.finished} finished "
                     f"trials in {r.wall_s:.1f} s, 2 workers)")  # fmt: skip
        for text, ok in load_checks(r):
            all_ok &= ok
            lines.append(f"{r.label}: {'OK    ' if ok else 'FAILED'} {text}")
        lines.append(f"{r.label}: failed trials: {len(r.fail_reasons)}")
        reasons = Counter(r.fail_reasons.values())
        for reason, count in reasons.most_common():
            numbers = sorted(k for k, v in r.fail_reasons.items() if v == reason)
            lines.append(f"{r.label}:   {count} x {reason} (trials {numbers[:20]})")
    return lines, all_ok


def epoch_lines(results: Sequence[Measured]) -> list[str]:
    """Where the stage's ``epochs_trained`` disagrees with the epochs the trials reported."""
    return [
        f"{r.label}: WARNING the stage's epochs_trained is {r.stage_epochs}, but the trials "
        f"reported {r.epochs} per-epoch values (the table counts the latter)"
        for r in results
        if r.stage_epochs is not None and r.stage_epochs != r.epochs
    ]


def error_lines(results: Sequence[Measured]) -> list[str]:
    """Errors and failed trials of the pruning / workers searches (none expected)."""
    lines = []
    for r in results:
        if r.error:
            lines.append(f"{r.label}: ERROR {r.error} (log: {r.log_path})")
        for number, reason in sorted(r.fail_reasons.items()):
            lines.append(f"{r.label}: trial {number} FAILED: {reason}")
    return lines


# --- report --------------------------------------------------------------------------------
def git_state() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" + uncommitted changes" if dirty else "")


def environment(args) -> list[str]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        "command: python benchmarks/bench_search.py " + mask_secrets(" ".join(sys.argv[1:])),
        f"Python {platform.python_version()}, NumPy {np.__version__}, Optuna "
        f"{optuna.__version__}, SQLAlchemy {sqlalchemy.__version__}, {platform.machine()}",
        f"git {git_state()}; {cores} usable cores of {os.cpu_count()}; load average at start "
        + " / ".join(f"{x:.2f}" for x in os.getloadavg())
        + " (1 / 5 / 15 min)",
    ]
    if args.load:
        pg = mask_secrets(args.postgres_url) if args.postgres_url else "not given"
        lines.append(
            f"load: digits, augment=none, model=mlp, {args.load_trials} trials of "
            f"{args.load_epochs} epochs, 2 workers, default sampler and pruner; PostgreSQL: {pg}"
        )
    else:
        lines.append(
            f"model={args.model}, data=mnist_sample, augment={args.augment}, "
            f"search.max_train_samples={args.max_train_samples}, search.epochs={args.epochs}, "
            f"seed={args.seed}, search.threads=1, tracking=off"
        )
        lines.append(
            f"pruning: {args.trials} trials, 1 worker, default space and TPE sampler, "
            f"pruner {args.pruner} with its default settings vs none"
        )
        lines.append(
            f"workers: {args.worker_trials} trials, no pruner, batch size {args.worker_batch} "
            f"(every trial trains {args.epochs} epochs)"
        )
    return lines


def markdown_report(env: Sequence[str], rows: Sequence[Measured], summary: Sequence[str]) -> str:
    bullets = "\n".join(f"- {line}" for line in env)
    table = render_markdown(HEADERS, [r.cells() for r in rows])
    results = "\n".join(f"- {line}" for line in summary)
    return f"# Search stage benchmark\n\n{bullets}\n\n{table}\n\n{results}\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Search stage: epochs and accuracy with / without pruning, 1 vs 2 workers; "
        "with --load, 200 short trials on a shared SQLite / PostgreSQL study."
    )
    parser.add_argument("--model", default="mlp", help="model config group (conf/model)")
    parser.add_argument("--augment", default="shifts", help="augment config group")
    parser.add_argument("--trials", type=int, default=16, help="trials per pruning search")
    parser.add_argument(
        "--pruner",
        default=str(compose_config([]).search.pruner.name),
        choices=[p.name for p in PrunerName if p.name != "none"],
        help="the pruner compared with none (default and settings: conf/search/default.yaml)",
    )
    parser.add_argument("--worker-trials", type=int, default=32, help="trials per worker search")
    parser.add_argument("--worker-batch", type=int, default=20, help="batch size, worker runs")
    parser.add_argument("--epochs", type=int, default=8, help="search.epochs (per trial)")
    parser.add_argument(
        "--max-train-samples", type=int, default=10_000, help="search.max_train_samples"
    )
    parser.add_argument("--seed", type=int, default=42, help="root seed (data split, sampler)")
    parser.add_argument("--only", choices=["pruning", "workers"], help="run one of the two")
    parser.add_argument("--load", action="store_true", help="run the load benchmark instead")
    parser.add_argument("--load-trials", type=int, default=200, help="trials per load search")
    parser.add_argument("--load-epochs", type=int, default=2, help="epochs per load trial")
    parser.add_argument(
        "--load-mlflow", action="store_true", help="load: track in MLflow and check its runs"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("POSTGRES_URL"),
        help="SQLAlchemy URL of a PostgreSQL database for --load (default: $POSTGRES_URL)",
    )
    parser.add_argument("--workdir", type=Path, help="keep data and studies here (default: tmp)")
    parser.add_argument("--output", type=Path, help="also write the report as Markdown here")
    args = parser.parse_args(argv)
    for name in ("trials", "worker_trials", "worker_batch", "epochs", "load_trials"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    env = environment(args)
    print("\n".join(env), flush=True)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-search-"))
    root.mkdir(parents=True, exist_ok=True)
    exit_status = 0
    try:
        if args.load:
            rows = bench_load(args, root)
            summary, ok = load_lines(rows)
            summary += epoch_lines(rows)
            exit_status = 0 if ok else 1
        else:
            base = [
                *paths(root / "mnist"),
                f"model={args.model}",
                f"augment={args.augment}",
                "tracking=off",
                f"search.max_train_samples={args.max_train_samples}",
                f"search.epochs={args.epochs}",
                f"seed={args.seed}",
            ]
            print(f"data: {prepare_data(base)}", flush=True)
            warm_up(base, root)
            rows, summary = [], []
            if args.only in (None, "pruning"):
                pruning = bench_pruning(args, base, root)
                rows += pruning
                summary += pruning_lines(*pruning)
            if args.only in (None, "workers"):
                workers = bench_workers(args, base, root)
                rows += workers
                summary += worker_lines(*workers)
            summary += [*error_lines(rows), *epoch_lines(rows)]
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    env.append("load average at end " + " / ".join(f"{x:.2f}" for x in os.getloadavg()))
    print()
    print(render_text(HEADERS, [r.cells() for r in rows]))
    print()
    print("\n".join(summary))
    print(env[-1])
    if args.output is not None:
        write_text(args.output, markdown_report(env, rows, summary))
        print(f"\nMarkdown report written to {args.output}")
    return exit_status


if __name__ == "__main__":
    sys.exit(main())
