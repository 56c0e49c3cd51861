"""Baseline trial, best_params fragment, summary, one MLflow parent run per study, and what
a search prints (fast: sklearn digits, a small MLP)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline import augment, prepare, search
from pipeline.config import compose_config
from pipeline.search import outputs
from pipeline.search import study as study_module
from pipeline.search.objective import BASELINE_ATTR
from pipeline.search.space import check_space, including_configured, suggest
from tests.conftest import stage_overrides
from tests.environ import child_environment

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ["data=digits", "augment=none", "model=mlp"]


def overrides(root: Path, *extra: str) -> list[str]:
    return stage_overrides(
        root, *DIGITS, f"search.storage=sqlite:///{root / 'optuna.db'}", "search.epochs=3",
        "search.workers=1", "search.heartbeat_interval=1", "search.grace_period=3", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("study_outputs")
    cfg = compose_config(stage_overrides(root, *DIGITS))
    prepare.run(cfg)
    augment.run(cfg)
    return root


def load(cfg) -> optuna.Study:
    return optuna.load_study(study_name=search.study_name(cfg), storage=search.make_storage(cfg))


def test_baseline_is_trial_0_with_the_configured_values_and_reported(digits_root):
    cfg = compose_config(
        overrides(
            digits_root,
            "search.n_trials=4",
            "tracking=off",
            "search.study_name=base",
            "search.min_gain_se=0",
            "train.batch_size=30",
        )  # not among the choices: added to them  # fmt: skip
    )
    summary = search.run(cfg)
    study = load(cfg)
    baseline = study.trials[0]
    assert baseline.user_attrs["baseline"] is True and baseline.state.name == "COMPLETE"
    assert baseline.params == {"learning_rate": cfg.train.learning_rate, "l2": cfg.train.l2,
                               "batch_size": 30}  # fmt: skip
    assert len(baseline.intermediate_values) == 3  # never pruned: the full epoch budget
    assert study.best_value >= baseline.value
    assert summary["baseline_value"] == baseline.value and summary["baseline_trial"] == 0

    document = yaml.safe_load(Path(cfg.paths.best_params).read_text())
    assert document["baseline"] == {"trial": 0, "value": baseline.value}
    assert document["value"] == study.best_value and document["trial"] == study.best_trial.number
    report = (Path(cfg.paths.search) / "summary.md").read_text()
    assert "| baseline (configured) | 0 |" in report and f"{baseline.value:.4f}" in report
    assert f"| best | {study.best_trial.number} |" in report

    search.run(cfg)  # a rerun of a full study enqueues no second baseline
    assert [t.user_attrs.get("baseline", False) for t in load(cfg).trials].count(True) == 1


def test_searched_hidden_units_go_to_the_model_group(digits_root):
    cfg = compose_config(
        overrides(
            digits_root,
            "search.n_trials=2",
            "tracking=off",
            "search.study_name=units",
            "+search.space.hidden_units={low: 10, high: 40}",
        )  # fmt: skip
    )
    search.run(cfg)
    best = load(cfg).best_trial
    fragment = yaml.safe_load(Path(cfg.paths.best_params).read_text())["config"]
    units = best.params["hidden_units"]
    assert fragment["model"] == {"hidden_layer_sizes": [units] * len(cfg.model.hidden_layer_sizes)}
    assert load(cfg).trials[0].params["hidden_units"] == cfg.model.hidden_layer_sizes[0]


def test_a_resumed_study_logs_into_its_one_parent_run(digits_root, tmp_path):
    tracking = f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"
    first = compose_config(overrides(digits_root, "search.n_trials=2", tracking,
                                     "search.study_name=resumed"))  # fmt: skip
    search.run(first)
    more = compose_config(overrides(digits_root, "search.n_trials=4", tracking,
                                    "search.study_name=resumed"))  # fmt: skip
    search.run(more)
    client = MlflowClient(tracking_uri=more.tracking.uri)
    experiment = client.get_experiment_by_name(more.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("dvc_stage") == "search"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(int(c.data.params["trial"]) for c in children) == [0, 1, 2, 3]
    assert parents[0].data.metrics["n_complete"] + parents[0].data.metrics["n_pruned"] == 4


def test_a_search_prints_one_line_per_trial_and_no_warnings(digits_root):
    args = overrides(digits_root, "search.n_trials=4", "tracking=off", "search.workers=2",
                     "search.study_name=printed")  # fmt: skip
    env = {k: v for k, v in child_environment().items() if k != "PYTHONWARNINGS"}
    result = subprocess.run([sys.executable, "-m", "pipeline.search", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("trial ")]
    assert len(lines) == 4 and lines[0].startswith("trial 0 (baseline) COMPLETE")
    assert all("best " in line and "elapsed " in line and "eta=" in line for line in lines)
    assert "4/4" in result.stderr  # the bar over trials
    assert "Warning" not in result.stderr and "Invalid -W" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"l2": {"low": 2, "high": 1}}, r"search\.space\.l2: low=2 is greater than high=1"),
        ({"eta": {"low": 0, "high": 1, "log": True}}, r"search\.space\.eta\.low: must be > 0"),
        ({"m": {"choices": []}}, r"search\.space\.m\.choices: must be a non-empty list"),
        ({"m": {"choices": [1], "low": 1}}, r"search\.space\.m\.low: unknown key"),
        ({}, r"search\.space: empty"),
    ],
)
def test_check_space_names_the_key(space, message):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        check_space(space)


def test_the_space_holds_the_configured_values_so_a_crashed_baseline_can_be_retried():
    space = {
        "learning_rate": {"low": 0.03, "high": 0.3, "log": True},
        "batch_size": {"choices": [10, 20]},
        "hidden_units": {"low": 30, "high": 60, "log": False},
        "l2": {"low": 0.01, "high": 1.0, "log": True},
    }
    configured = {"learning_rate": 0.5, "batch_size": 30, "hidden_units": 100, "l2": 0.0}
    widened = including_configured(space, configured)
    assert widened["learning_rate"] == {"low": 0.03, "high": 0.5, "log": True}
    assert widened["batch_size"] == {"choices": [10, 20, 30]}
    assert widened["hidden_units"] == {"low": 30, "high": 100, "log": False}
    assert widened["l2"] == space["l2"]  # 0 has no place on a log scale: not stretched

    study = optuna.create_study()
    study.enqueue_trial({k: v for k, v in configured.items() if k != "l2"})
    trial = study.ask()
    values = suggest(trial, widened)
    assert {k: values[k] for k in ("learning_rate", "batch_size", "hidden_units")} == {
        "learning_rate": 0.5, "batch_size": 30, "hidden_units": 100,
    }  # fmt: skip
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[-1])
    assert study.trials[-1].state.name == "WAITING"  # the retry is a valid trial


def test_a_trial_running_where_no_one_can_see_ends_the_search_with_its_name(digits_root):
    """Journal storage (no heartbeats), a RUNNING trial of a process on another host: the
    search runs the rest of the budget, waits a grace period, then names it and exits."""
    journal = f"journal://{digits_root / 'elsewhere.log'}"
    args = overrides(digits_root, "search.n_trials=2", "tracking=off", "search.grace_period=1",
                     f"search.storage={journal}", "search.study_name=elsewhere")  # fmt: skip
    cfg = compose_config([a for a in args if not a.startswith("search.storage=sqlite")])
    trial = search.create_study(cfg).ask()
    trial.set_user_attr("worker", {"host": "another-host", "pid": 4242, "start": 1})
    with pytest.raises(search.StudyIncomplete, match=r"1 of 2 trials finished.*trial 0 "
                       r"\(host another-host pid 4242.*rerun there"):  # fmt: skip
        search.run(cfg)
    assert [t.state.name for t in load(cfg).trials] == ["RUNNING", "COMPLETE"]


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_best_of_tied_trials_is_the_lowest_numbered(direction):
    study = optuna.create_study(direction=direction)
    for value in (0.5, 0.9, 0.9, 0.1, 0.1):
        study.add_trial(optuna.trial.create_trial(value=value))
    complete = study.get_trials(deepcopy=False)
    expected = 1 if direction == "maximize" else 3
    assert outputs.best_trial(study, complete).number == expected


def _study_with(values: list[float]) -> tuple[optuna.Study, list]:
    """Trial 0 (the baseline) and the others, with these validation accuracies."""
    study = optuna.create_study(direction="maximize")
    for number, value in enumerate(values):
        attrs = {BASELINE_ATTR: True} if number == 0 else {}
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs))
    return study, study.get_trials(deepcopy=False)


@pytest.mark.parametrize(
    ("values", "n_val", "min_gain_se", "chosen"),
    [
        # 0.976 vs 0.9787 on 750 images: one standard error is 0.79 points, the gain 0.27
        ([0.976, 0.95, 0.9787], 750, 1.0, 0),
        ([0.976, 0.95, 0.9787], 750, 0.0, 2),  # the rule off: the best wins
        ([0.976, 0.95, 0.9787], 750, 0.3, 2),  # 0.27 > 0.3 x 0.79 points
        ([0.90, 0.93, 0.92], 10_000, 1.0, 1),  # 3 points on 10,000 images: ~7 errors
        ([0.90, 0.90, 0.89], 10_000, 0.0, 0),  # a tie goes to the baseline
    ],
)
def test_the_best_replaces_the_baseline_only_beyond_the_validation_noise(
    values, n_val, min_gain_se, chosen
):
    study, complete = _study_with(values)
    choice = outputs.choose_trial(study, complete, n_val, min_gain_se)
    assert choice.best.number == max(range(len(values)), key=lambda i: (values[i], -i))
    assert choice.chosen.number == chosen and choice.kept_baseline == (chosen != choice.best.number)
    p1, p2 = max(values), values[0]
    if choice.se is not None:
        assert choice.se == pytest.approx(math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n_val))
    assert ("within" in choice.reason()) == choice.kept_baseline


def test_without_a_baseline_the_best_is_chosen():
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.6):
        study.add_trial(optuna.trial.create_trial(value=value))
    choice = outputs.choose_trial(study, study.get_trials(), 100, 1.0)
    assert choice.chosen.number == 1 and choice.baseline is None


def test_the_search_writes_the_chosen_trial_and_the_studys_best(digits_root):
    cfg = compose_config(
        overrides(
            digits_root,
            "search.n_trials=4",
            "tracking=off",
            "search.study_name=noise",
            "search.min_gain_se=100",
        )  # fmt: skip (nothing beats 100 standard errors)
    )
    summary = search.run(cfg)
    study = load(cfg)
    document = yaml.safe_load(Path(cfg.paths.best_params).read_text())
    baseline = study.trials[0]
    assert document["trial"] == 0 and document["value"] == baseline.value
    assert document["best"] == {"trial": study.best_trial.number, "value": study.best_value}
    assert document["config"]["train"] == {k: baseline.params[k] for k in baseline.params}
    assert summary["chosen_trial"] == 0 and summary["best_trial"] == study.best_trial.number
    report = (Path(cfg.paths.search) / "summary.md").read_text()
    assert "| chosen (train uses it) | 0 |" in report and "min_gain_se=100" in report


def test_the_study_is_named_after_its_data_and_trial_code(digits_root, monkeypatch):
    cfg = compose_config(overrides(digits_root))
    name = search.study_name(cfg)
    assert name == search.study_name(compose_config(overrides(digits_root, "search.min_gain_se=3")))
    monkeypatch.setattr(study_module, "trial_code_digest", lambda: "changed code")
    assert search.study_name(cfg) != name
    monkeypatch.undo()
    assert search.study_name(cfg) == name
    meta = Path(cfg.paths.augmented) / "meta.json"
    original = meta.read_bytes()
    try:
        meta.write_bytes(original.replace(b"}", b', "note": "augmented again"}', 1))
        assert search.study_name(cfg) != name
    finally:
        meta.write_bytes(original)


@pytest.mark.parametrize(
    "module", ["pipeline.nn.layers", "pipeline.estimators", "pipeline.search.objective"]
)
def test_the_trial_code_digest_changes_with_the_code_a_trial_runs(monkeypatch, module):
    changed = Path(importlib.util.find_spec(module).origin)
    digest = study_module.trial_code_digest.__wrapped__
    before = digest()
    read_bytes = Path.read_bytes
    monkeypatch.setattr(
        Path, "read_bytes", lambda path: read_bytes(path) + (b"#" if path == changed else b"")
    )
    assert digest() != before
