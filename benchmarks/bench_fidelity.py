"""Do the search's cheap trials rank settings the way full training does? (issue 11)

A search trial trains on ``search.max_train_samples`` images for at most ``search.epochs``
epochs, and the pruner stops most trials after one or a few epochs: a low-fidelity score.
The train stage then trains the best trial's values on the whole (augmented) training set
for ``train.epochs`` with early stopping: the full-fidelity score. The search pays off only
if the first ranks settings as the second does. This benchmark measures it:

1. Run the search stage (``pipeline.search.run``) on a config composed from ``conf/``
   (default: the default pipeline's, ``model=cnn`` on ``mnist_sample`` with the book's
   shifts), every path in a temporary directory, ``tracking=off``, a fresh study.
2. Retrain every finished trial's values (or the ``--retrain`` best of them by search score,
   plus trial 0, the baseline) the way the train stage does: ``build_estimator`` on the
   config with the trial's values merged in (``as_config``), the whole training set,
   early stopping on the validation split. Only validation data is scored; the test split
   is never read.
3. Report per trial: search score and the epochs it got, full-training best validation
   accuracy; Spearman's and Kendall's rank correlation of the two (``scipy.stats``), among
   all retrained trials and among the trials the pruner let finish; and the search's pick
   against the best retrained trial (the regret, in points of validation accuracy).

    python benchmarks/bench_fidelity.py                      # the default pipeline's search
    python benchmarks/bench_fidelity.py --trials 16 --retrain 8 search.max_train_samples=null

Extra arguments are Hydra overrides applied to the composed config (``model=...``,
``search.epochs=...``). Each retraining costs one train stage (about 30 s of one core for
the default CNN), so the whole run takes several minutes. ``--output PATH`` writes the
report as Markdown.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState
from scipy import stats
from threadpoolctl import threadpool_limits

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_search import output_to, paths, prepare_data  # noqa: E402
from benchmarks.common import render_markdown, render_text  # noqa: E402
from pipeline import search  # noqa: E402
from pipeline.artifacts import write_text  # noqa: E402
from pipeline.config import compose_config  # noqa: E402
from pipeline.factory import build_estimator, load_split  # noqa: E402
from pipeline.io import read_mapping  # noqa: E402
from pipeline.search.space import as_config, estimator_overrides  # noqa: E402

HEADERS = ["trial", "state", "search score", "search epochs", "full val accuracy",
           "full epochs", "values"]  # fmt: skip


@dataclass
class Retrained:
    number: int
    state: str
    search_score: float
    search_epochs: int
    full_score: float
    full_epochs: int
    values: dict


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--trials", type=int, default=None,
                        help="search.n_trials (default: the config's)")  # fmt: skip
    parser.add_argument("--retrain", type=int, default=None,
                        help="retrain the N best trials by search score, plus trial 0 "
                        "(default: every finished trial)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per training")
    parser.add_argument("--output", type=Path, default=None, help="also write Markdown here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the composed config")
    return parser.parse_args(argv)


def run_search(overrides: list[str]):
    """The search stage on a fresh study; returns (config, finished trials)."""
    cfg = compose_config(overrides)
    started = time.perf_counter()
    with output_to(Path(cfg.paths.reports) / "search.log"):
        search.run(cfg)
    print(f"search: {time.perf_counter() - started:.0f} s", flush=True)
    study = optuna.load_study(study_name=search.study_name(cfg), storage=search.make_storage(cfg))
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    return cfg, finished


def chosen(trials: list, retrain: int | None) -> list:
    """The trials to retrain: all, or the ``retrain`` best by search score plus trial 0."""
    if retrain is None:
        return trials
    best = sorted(trials, key=lambda t: -t.value)[:retrain]
    baseline = [t for t in trials if t.number == 0 and t not in best]
    return sorted(best + baseline, key=lambda t: t.number)


def retrain(cfg, trial, train, val, threads: int) -> Retrained:
    """Train the trial's values as the train stage would (``train``/``val``: the splits
    it reads); best validation accuracy."""
    fragment = as_config(estimator_overrides(dict(trial.params), cfg))
    full = OmegaConf.merge(cfg, fragment)
    estimator = build_estimator(full, train.image_shape)
    with threadpool_limits(limits=threads):
        estimator.fit(train.X, train.y, validation_data=(val.X, val.y))
    return Retrained(
        number=trial.number,
        state=trial.state.name,
        search_score=float(trial.value),
        search_epochs=len(trial.intermediate_values),
        full_score=float(estimator.best_validation_score_),
        full_epochs=int(estimator.n_iter_),
        values=dict(trial.params),
    )


def correlation_lines(results: list[Retrained], picked: int) -> list[str]:
    lines = []
    groups = {
        "all retrained trials": results,
        "trials the pruner let finish": [r for r in results if r.state == "COMPLETE"],
    }
    for name, group in groups.items():
        if len(group) < 3:
            lines.append(f"rank correlation, {name}: fewer than 3 trials ({len(group)})")
            continue
        search_scores = [r.search_score for r in group]
        full_scores = [r.full_score for r in group]
        rho = stats.spearmanr(search_scores, full_scores).statistic
        tau = stats.kendalltau(search_scores, full_scores).statistic
        lines.append(f"rank correlation, {name} ({len(group)}): Spearman {rho:+.2f}, "
                     f"Kendall {tau:+.2f}")  # fmt: skip
    best = max(results, key=lambda r: r.full_score)
    pick = next(r for r in results if r.number == picked)
    baseline = next((r for r in results if r.number == 0), None)
    lines.append(
        f"search's pick: trial {pick.number}, full val {100 * pick.full_score:.2f}%; best "
        f"retrained: trial {best.number}, {100 * best.full_score:.2f}%; regret "
        f"{100 * (best.full_score - pick.full_score):.2f} points"
    )
    if baseline is not None:
        lines.append(
            f"pick minus baseline (trial 0) after full training: "
            f"{100 * (pick.full_score - baseline.full_score):+.2f} points"
        )
    return lines


def rows(results: list[Retrained]) -> list[list[str]]:
    return [
        [
            str(r.number),
            r.state,
            f"{r.search_score:.4f}",
            str(r.search_epochs),
            f"{r.full_score:.4f}",
            str(r.full_epochs),
            ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in sorted(r.values.items())
            ),
        ]  # fmt: skip
        for r in results
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-fidelity-"))
    try:
        return measure(args, root, argv)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(args: argparse.Namespace, root: Path, argv: Sequence[str] | None) -> int:
    overrides = [
        *paths(root),
        "tracking=off",
        f"search.storage=sqlite:///{root / 'optuna.db'}",
        *([f"search.n_trials={args.trials}"] if args.trials else []),
        *args.overrides,
    ]
    load_before = os.getloadavg()
    print(f"data: {prepare_data(overrides)}", flush=True)
    cfg, trials = run_search(overrides)
    picked = int(read_mapping(cfg.paths.best_params)["trial"])  # what train would use
    train = load_split(Path(cfg.paths.augmented) / "train.npz")
    val = load_split(Path(cfg.paths.prepared) / "val.npz")
    results = []
    for trial in chosen(trials, args.retrain):
        started = time.perf_counter()
        results.append(retrain(cfg, trial, train, val, args.threads))
        r = results[-1]
        print(f"  trial {r.number} ({r.state}, search {r.search_score:.4f}): full val "
              f"{r.full_score:.4f} after {r.full_epochs} epochs, "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    if picked not in {r.number for r in results}:
        best = next(t for t in trials if t.number == picked)
        results.append(retrain(cfg, best, train, val, args.threads))
    results.sort(key=lambda r: r.number)
    setting = (
        f"model={cfg.model.name}, data={cfg.data.name}, augment={cfg.augment.name}; search: "
        f"{cfg.search.n_trials} trials, {cfg.search.epochs} epochs on "
        f"{cfg.search.max_train_samples} images, pruner {cfg.search.pruner.name}; full "
        f"training: train.epochs={cfg.train.epochs}, early stopping "
        f"{cfg.train.early_stopping}; load before {load_before[0]:.2f}, after "
        f"{os.getloadavg()[0]:.2f}"
    )
    lines = correlation_lines(results, picked)
    print("\n" + setting + "\n\n" + render_text(HEADERS, rows(results)) + "\n\n" + "\n".join(lines))
    if args.output is not None:
        body = "\n".join(f"- {line}" for line in lines)
        report = (
            "# Search fidelity: search scores vs full training\n\n"
            f"`python benchmarks/bench_fidelity.py {' '.join(argv or sys.argv[1:])}`\n\n"
            f"- {setting}\n\n{render_markdown(HEADERS, rows(results))}\n\n{body}\n"
        )
        write_text(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
