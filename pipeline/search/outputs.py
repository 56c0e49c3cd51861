"""What a search leaves: best_params.yaml (a config fragment train merges), trials.csv,
summary.md (baseline, best and chosen), and plots named after the metric and the book's symbols."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import yaml
from omegaconf import DictConfig
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from pipeline import reports
from pipeline.artifacts import ArtifactError, write_text
from pipeline.search.objective import BASELINE_ATTR
from pipeline.search.optuna_compat import ignore_experimental_warnings
from pipeline.search.space import as_config, estimator_overrides

LABELS = {
    "learning_rate": "learning rate η",
    "l2": "L2 regularisation λ",
    "batch_size": "mini-batch size m",
    "hidden_units": "hidden units",
    "filters": "filters (first conv layer)",
    "dropout": "dropout p",
    "epochs": "epochs (searched)",
}
METRIC_LABELS = {"val_accuracy": "validation accuracy (%)"}


def label(name: str) -> str:
    return LABELS.get(name, name)


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(BASELINE_ATTR) and trial.state == TrialState.COMPLETE:
            return trial
    return None


def best_trial(study: optuna.Study, complete: list[FrozenTrial]) -> FrozenTrial:
    """The best complete trial, a tie going to the lowest number (so the baseline, trial 0,
    wins one). Optuna's ``study.best_trial`` leaves ties to the storage's row order, which
    PostgreSQL does not fix: two reads of one study could name different trials."""
    sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
    return max(complete, key=lambda trial: (sign * trial.value, -trial.number))


@dataclass(frozen=True)
class Choice:
    """The trial train uses (``chosen``) and why: the study's best, or the baseline when
    the best beats it by no more than ``min_gain_se`` standard errors (``se``, in accuracy)
    of the difference of two accuracies on ``n_val`` validation images."""

    chosen: FrozenTrial
    best: FrozenTrial
    baseline: FrozenTrial | None
    se: float | None
    n_val: int
    min_gain_se: float

    @property
    def kept_baseline(self) -> bool:
        return self.chosen.number != self.best.number

    def reason(self) -> str:
        if self.baseline is None:
            return "the best trial (no baseline in the study)"
        if self.best.number == self.baseline.number:
            return "the best trial, the baseline (the configured values)"
        gain = 100 * (self.best.value - self.baseline.value)
        errors = f"{self.min_gain_se:g} standard error" + ("" if self.min_gain_se == 1 else "s")
        margin = f"{errors} ({100 * self.min_gain_se * self.se:.2f} points) of {self.n_val} images"
        if self.kept_baseline:
            return (
                f"the baseline (the configured values): the best trial, {self.best.number}, "
                f"beats it by {gain:+.2f} points on validation, within {margin}"
            )
        return f"the best trial: {gain:+.2f} points over the baseline, beyond {margin}"


def choose_trial(
    study: optuna.Study, complete: list[FrozenTrial], n_val: int, min_gain_se: float
) -> Choice:
    """The best trial, unless its gain over the baseline is within the validation set's
    noise: one standard error of the difference of two accuracies p1, p2 on n images,
    sqrt((p1 (1 - p1) + p2 (1 - p2)) / n), times ``min_gain_se`` (the one-standard-error
    rule: keep the simpler choice, here the book's values, unless the data tell otherwise).
    The two models err on many of the same images, so the true noise is smaller: the rule
    errs towards the book's values."""
    best, baseline = best_trial(study, complete), baseline_trial(study)
    if baseline is None or baseline.number == best.number:
        return Choice(best, best, baseline, None, n_val, min_gain_se)
    p1, p2 = float(best.value), float(baseline.value)
    se = math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n_val)  # accuracies in [0, 1]
    keep = p1 - p2 <= min_gain_se * se
    return Choice(baseline if keep else best, best, baseline, se, n_val, min_gain_se)


def trial_config(cfg: DictConfig, trial: FrozenTrial) -> dict:
    """A trial as a config fragment: its searched values only. Its epoch count is
    not among them unless ``epochs`` was searched: a trial trains on a subset for at most
    ``search.epochs``, so train keeps ``train.epochs`` as its maximum and stops early on
    validation."""
    return as_config(estimator_overrides(trial.params, cfg))


def write_outputs(cfg: DictConfig, study: optuna.Study, n_val: int) -> dict:
    """Write every output; returns the summary the stage logs and prints. ``n_val``: the
    size of the validation split the trials were scored on (see :func:`choose_trial`)."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        reasons = {t.user_attrs.get("reason") for t in trials}
        raise ArtifactError(
            f"study {study.study_name}: no trial completed (reasons: {sorted(map(str, reasons))})"
        )
    choice = choose_trial(study, complete, n_val, float(cfg.search.min_gain_se))
    chosen, best, baseline = choice.chosen, choice.best, choice.baseline
    out = Path(cfg.paths.search)
    fragment = trial_config(cfg, chosen)
    document = {"study": study.study_name, "trial": chosen.number, "value": float(chosen.value),
                "epochs": int(chosen.user_attrs.get("epochs", 0)),
                "model": cfg.model.name, "dataset": cfg.data.name}  # fmt: skip
    document["best"] = {"trial": best.number, "value": float(best.value)}
    if baseline is not None:
        document["baseline"] = {"trial": baseline.number, "value": float(baseline.value)}
    document["chosen"] = choice.reason()
    document["config"] = fragment
    header = (
        f"# Trial {chosen.number} of study {study.study_name}: {cfg.search.metric} "
        f"{chosen.value:.4f}; {choice.reason()}.\n"
        "# train merges `config` onto the composed config when train.use_search=true.\n"
    )
    write_text(cfg.paths.best_params, header + yaml.safe_dump(document, sort_keys=False))
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs"))
    frame["duration_s"] = [t.duration.total_seconds() if t.duration else None for t in trials]
    write_text(out / "trials.csv", frame.to_csv(index=False))
    write_text(out / "summary.md", summary_markdown(cfg, study, choice))
    plot_study(study, out / "plots", str(cfg.search.metric))
    count = {state: sum(t.state == state for t in trials) for state in TrialState}
    return {
        "best_value": float(best.value),
        "best_trial": best.number,
        "best_params": dict(best.params),
        "chosen_value": float(chosen.value),
        "chosen_trial": chosen.number,
        "chosen": choice.reason(),
        "chosen_config": fragment,
        "baseline_value": float(baseline.value) if baseline else None,
        "baseline_trial": baseline.number if baseline else None,
        "n_complete": count[TrialState.COMPLETE],
        "n_pruned": count[TrialState.PRUNED],
        "n_failed": count[TrialState.FAIL],
        "epochs_trained": int(sum(t.user_attrs.get("epochs", 0) for t in trials)),
    }


def summary_markdown(cfg, study, choice: Choice) -> str:
    """Baseline (the configured values), best and chosen trial side by side, on validation."""
    rows = [("baseline (configured)", choice.baseline), ("best", choice.best)]
    rows.append(("chosen (train uses it)", choice.chosen))
    names = sorted({n for _, t in rows if t is not None for n in t.params})
    lines = [
        f"# Search {study.study_name}",
        "",
        f"{len(study.trials)} trials; {cfg.search.metric} on the validation split "
        f"({choice.n_val} images; the test split is never used to choose).",
        "",
        "| | trial | "
        + " | ".join(label(n) for n in names)
        + f" | epochs trained | {cfg.search.metric} |",
        "|---" * (len(names) + 4) + "|",
    ]
    for role, trial in rows:
        if trial is None:
            lines.append(f"| {role} | - |" + " - |" * (len(names) + 2))
            continue
        values = " | ".join(_short(trial.params.get(n, "-")) for n in names)
        lines.append(
            f"| {role} | {trial.number} | {values} | {trial.user_attrs.get('epochs', '-')} "
            f"| {trial.value:.4f} |"
        )
    if choice.baseline is not None:
        gain = 100 * (choice.best.value - choice.baseline.value)
        lines += ["", f"Best minus baseline: {gain:+.2f} points."]
    lines += ["", f"Chosen: {choice.reason()} (`search.min_gain_se={choice.min_gain_se:g}`)."]
    return "\n".join(lines) + "\n"


# --- plots -------------------------------------------------------------------------------------
def plot_study(study: optuna.Study, directory: Path, metric: str) -> None:
    """History, slices, intermediate values by epoch (ours, labelled), importances and the
    eta x lambda contour (Optuna's, relabelled); a plot that needs more trials is skipped."""
    import matplotlib.pyplot as plt

    trials = study.get_trials(deepcopy=False)
    ylabel = METRIC_LABELS.get(metric, metric)
    own = {
        "optimization_history": plot_history,
        "slice": plot_slices,
        "intermediate_values": plot_intermediate_values,
    }
    for name, draw in own.items():
        figure = draw(trials, ylabel)
        if figure is not None:
            reports.save_figure(figure, directory / f"{name}.png")
    from optuna.visualization import matplotlib as ovm

    names = sorted({name for t in trials for name in t.params})
    contour = [n for n in ("learning_rate", "l2") if n in names]
    optuna_plots = {
        "param_importances": lambda: ovm.plot_param_importances(study),
        "contour": lambda: ovm.plot_contour(study, params=contour if len(contour) == 2 else None),
    }
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # "unique value length" chatter
    with ignore_experimental_warnings(), warnings.catch_warnings():
        # "too few trials" / "quantiles select the same set of trials": importances are
        # then equal, which the plot's equal bars already say
        warnings.filterwarnings("ignore", "The number of trials is too small", UserWarning)
        warnings.filterwarnings("ignore", "Target and region quantiles", UserWarning)
        for name, draw in optuna_plots.items():
            try:
                axes = draw()
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # e.g. importances need two completed trials with varied params
            figure = np.ravel(axes)[0].figure if isinstance(axes, np.ndarray) else axes.figure
            relabel(figure, ylabel)
            reports.save_figure(figure, directory / f"{name}.png")
    optuna.logging.set_verbosity(verbosity)
    plt.close("all")


def relabel(figure, ylabel: str) -> None:
    """Parameter names -> the book's symbols, the metric's name on value axes, small ticks."""
    for ax in figure.axes:
        for get, set_ in ((ax.get_xlabel, ax.set_xlabel), (ax.get_ylabel, ax.set_ylabel)):
            text = get()
            if text in LABELS:
                set_(label(text))
            elif text in ("Objective Value", "Objective value"):
                set_(ylabel)
        ax.tick_params(labelsize=8)
        if ax.get_title().startswith("Contour"):
            ax.set_title(f"{ylabel} over η and λ")


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _percent(value: float | None) -> float:
    return np.nan if value is None else 100.0 * value


def plot_history(trials: list[FrozenTrial], ylabel: str):
    import matplotlib.pyplot as plt

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([t.number for t in complete], [_percent(t.value) for t in complete], "o",
            label="trial (complete)")  # fmt: skip
    best = np.maximum.accumulate([t.value for t in complete])
    ax.step([t.number for t in complete], 100 * best, where="post", label="best so far")
    for t in complete:
        if t.user_attrs.get(BASELINE_ATTR):
            ax.axhline(_percent(t.value), color="grey", ls="--", label="baseline (configured)")
    ax.set(xlabel="trial", ylabel=ylabel, title="Search history")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_slices(trials: list[FrozenTrial], ylabel: str):
    """The metric against each parameter, one panel each, log axes where searched so."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    names = sorted({n for t in complete for n in t.params})
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.6), sharey=True,
                             squeeze=False)  # fmt: skip
    for ax, name in zip(axes[0], names, strict=True):
        shown = [t for t in complete if name in t.params]
        xs = [t.params[name] for t in shown]
        dist = shown[0].distributions[name]
        points = ax.scatter(xs, [_percent(t.value) for t in shown], c=[t.number for t in shown],
                            cmap="viridis", s=22)  # fmt: skip
        if getattr(dist, "log", False):
            ax.set_xscale("log")
            decades = np.log10(max(xs) / min(xs)) if min(xs) > 0 else 0
            subs = (1.0,) if decades > 1.5 else (1.0, 2.0, 5.0)  # 3-6 labelled ticks
            ax.xaxis.set_major_locator(LogLocator(subs=subs, numticks=12))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())  # 4x10^-2 labels overlap
        elif hasattr(dist, "choices") and all(isinstance(c, int | float) for c in dist.choices):
            ax.set_xticks(sorted(dist.choices))
        elif isinstance(xs[0], int | float):
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_xlabel(label(name))
        ax.tick_params(axis="x", labelsize=8, rotation=30)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    fig.colorbar(points, ax=axes[0].tolist(), label="trial")
    fig.suptitle("Validation accuracy by parameter (complete trials)")
    return fig


def plot_intermediate_values(trials: list[FrozenTrial], ylabel: str):
    """The metric after every epoch, per trial: what the pruner saw."""
    import matplotlib.pyplot as plt

    shown = [t for t in trials if t.intermediate_values]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = {TrialState.COMPLETE: ("-", 0.9), TrialState.PRUNED: (":", 0.6)}
    for t in shown:
        steps = sorted(t.intermediate_values)
        line, alpha = styles.get(t.state, ("--", 0.4))
        baseline = bool(t.user_attrs.get(BASELINE_ATTR))
        ax.plot(steps, [_percent(t.intermediate_values[s]) for s in steps], line,
                color="black" if baseline else None, lw=2 if baseline else 1, alpha=alpha,
                marker=".", label="baseline" if baseline else None)  # fmt: skip
    ax.plot([], [], "k:", label="pruned")
    ax.set(xlabel="epoch", ylabel=ylabel, title="Validation accuracy by epoch, per trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
