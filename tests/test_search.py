"""The search stage: pruning, best params for train, MLflow nesting, resume, workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from pipeline import augment, evaluate, prepare, search, train
from pipeline.artifacts import load_model
from pipeline.config import compose_config
from pipeline.errors import ConfigError
from pipeline.estimators import MLPClassifier
from pipeline.io import ArtifactError, save_arrays
from pipeline.search.objective import training_rows
from tests.conftest import stage_overrides

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ["data=digits", "augment=none", "model=mlp"]


def search_overrides(root: Path, *extra: str, storage: str | None = None) -> list[str]:
    storage = storage or f"sqlite:///{root / 'optuna.db'}"
    return stage_overrides(
        root,
        *DIGITS,
        f"search.storage={storage}",
        "search.epochs=3",
        "search.workers=1",
        "search.heartbeat_interval=1",
        "search.grace_period=3",
        *extra,
    )


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory):
    """Prepared and augmented digits, shared by the tests (each uses its own study)."""
    root = tmp_path_factory.mktemp("search")
    cfg = compose_config(stage_overrides(root, *DIGITS))
    prepare.run(cfg)
    augment.run(cfg)
    return root


def study_of(cfg) -> optuna.Study:
    return optuna.load_study(study_name=search.study_name(cfg), storage=search.make_storage(cfg))


def states(study: optuna.Study) -> dict[str, int]:
    counts = {state.name: 0 for state in TrialState}
    for trial in study.trials:
        counts[trial.state.name] += 1
    return counts


def test_search_prunes_and_train_takes_the_best_params(digits_root):
    cfg = compose_config(
        search_overrides(
            digits_root,
            "search.n_trials=8",
            "search.space.learning_rate.low=0.001",  # some hopeless trials to prune
            "search.min_gain_se=0",  # the best trial wins however small its gain
        )
    )
    summary = search.run(cfg)
    study = study_of(cfg)
    counts = states(study)
    assert counts["COMPLETE"] + counts["PRUNED"] == 8 and counts["PRUNED"] >= 1
    assert summary["n_pruned"] == counts["PRUNED"] and summary["epochs_trained"] < 8 * 3
    for trial in study.trials:  # epochs trained = epochs reported, pruned trials included
        assert trial.user_attrs["epochs"] == len(trial.intermediate_values) >= 1
    assert summary["epochs_trained"] == sum(len(t.intermediate_values) for t in study.trials)

    best = yaml.safe_load(Path(cfg.paths.best_params).read_text())
    assert best["trial"] == study.best_trial.number and best["value"] == study.best_value
    searched = best["config"]["train"]
    assert {k: searched[k] for k in study.best_trial.params} == study.best_trial.params
    assert set(searched) == {"learning_rate", "l2", "batch_size"}  # train.epochs stays the max
    assert best["epochs"] == study.best_trial.user_attrs["epochs"]
    assert "model" not in best["config"]  # hidden_units not searched
    trials_csv = (Path(cfg.paths.search) / "trials.csv").read_text().splitlines()
    assert len(trials_csv) == 1 + 8 and "PRUNED" in "".join(trials_csv)
    for plot in ("optimization_history", "param_importances", "contour", "intermediate_values",
                 "slice"):  # fmt: skip
        assert (Path(cfg.paths.search) / "plots" / f"{plot}.png").is_file()

    train_cfg = compose_config(
        search_overrides(
            digits_root, "train.use_search=true", "train.epochs=2", "search.min_gain_se=0"
        )
    )
    train.run(train_cfg)
    model = load_model(train_cfg.paths.model)
    assert model.get_params()["learning_rate"] == searched["learning_rate"]
    assert model.get_params()["batch_size"] == searched["batch_size"]

    # The evaluation report shows the search's best beside the baseline, then the test score.
    metrics = evaluate.run(train_cfg)
    assert metrics["search_best_val_accuracy"] == study.best_value
    assert metrics["search_baseline_val_accuracy"] == study.trials[0].value
    report = Path(train_cfg.paths.evaluation).read_text()
    assert f"trial {study.best_trial.number}: validation {study.best_value:.4f} vs " in report

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("dvc_stage") == "search"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 8
    assert {c.data.tags["state"] for c in children} == {"COMPLETE", "PRUNED"}
    assert all(float(c.data.tags["duration_s"]) > 0 for c in children)
    # Pruned trials: filterable by tag, with a status text (the run's note).
    pruned = client.search_runs(
        [experiment.experiment_id], "tags.state = 'PRUNED' and tags.pruned = 'true'"
    )
    assert len(pruned) == counts["PRUNED"]
    for run in pruned:
        assert run.info.status == "KILLED" and "pruned after epoch" in run.data.tags["reason"]
        assert run.data.tags["mlflow.note.content"].startswith("PRUNED: pruned after epoch")
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    assert parent.data.metrics["n_pruned"] == counts["PRUNED"]
    assert parent.data.metrics["best.learning_rate"] == pytest.approx(searched["learning_rate"])
    history = client.get_metric_history(children[0].info.run_id, "val_accuracy")
    assert [m.step for m in history] == list(range(1, len(history) + 1))


def test_resume_adds_only_the_missing_trials(digits_root):
    cfg = compose_config(search_overrides(digits_root, "search.n_trials=3", "tracking=off"))
    search.run(cfg)
    first = {t.number: t.value for t in study_of(cfg).trials}
    more = compose_config(search_overrides(digits_root, "search.n_trials=5", "tracking=off"))
    search.run(more)
    study = study_of(more)
    assert states(study)["COMPLETE"] + states(study)["PRUNED"] == 5
    assert {t.number: t.value for t in study.trials if t.number in first} == first
    search.run(more)  # the budget is spent: nothing more
    assert len(study_of(more).trials) == 5


def test_diverging_trials_are_pruned_with_their_reason(digits_root):
    cfg = compose_config(
        search_overrides(
            digits_root,
            "search.n_trials=2",
            "tracking=off",
            "model.activation=relu",
            "train.learning_rate=3e29",  # the baseline trial diverges too
            "search.space.learning_rate.low=1e29",
            "search.space.learning_rate.high=1e30",
            "search.pruner.name=none",
        )
    )
    with pytest.raises(Exception, match="no trial completed.*diverged"):
        search.run(cfg)
    study = study_of(cfg)
    assert states(study)["PRUNED"] == 2
    assert all("diverged" in t.user_attrs["reason"] for t in study.trials)


def test_a_network_that_does_not_fit_the_images_stops_the_search_before_its_study(
    digits_root, tmp_path
):
    cfg = compose_config(
        search_overrides(tmp_path, "tracking=off", "model=cnn", "model.conv_layers=[[2,9,1]]")
    )
    shutil.copytree(digits_root / "data", tmp_path / "data")
    with pytest.raises(ConfigError, match="^model.conv_layers: a 9x9 kernel does not fit"):
        search.run(cfg)
    assert not (tmp_path / "optuna.db").exists()


def test_trials_failing_in_a_row_stop_the_search_with_the_reason(digits_root, monkeypatch):
    def broken_fit(self, X, y, **kwargs):
        raise ValueError(f"X: cannot train on {len(X)} rows today")

    monkeypatch.setattr(MLPClassifier, "fit", broken_fit)  # workers=1: trials run here
    cfg = compose_config(search_overrides(digits_root, "search.n_trials=20", "tracking=off"))
    with pytest.raises(search.TrialsFailing, match="5 trials in a row failed; last: ") as info:
        search.run(cfg)
    study = study_of(cfg)
    assert states(study)["FAIL"] == 5
    reason = study.trials[-1].user_attrs["reason"]
    assert "cannot train on" in reason and reason in str(info.value)


def test_a_subset_too_small_for_every_class_gets_one_of_each(digits_root):
    cfg = compose_config(
        search_overrides(
            digits_root, "search.n_trials=2", "tracking=off", "search.max_train_samples=5"
        )  # fmt: skip (5 digits of 10 classes)
    )
    search.run(cfg)
    assert states(study_of(cfg))["COMPLETE"] == 2


@pytest.mark.parametrize("limit", [None, 3000, 5, 40])
def test_training_rows_are_the_same_draw_plus_the_classes_it_missed(limit):
    y = np.repeat(np.arange(10), [500, 500, 500, 500, 500, 500, 500, 500, 500, 2])
    rows = training_rows(y, limit, seed=7, classify=True)
    assert np.all(np.diff(rows) > 0) and set(y[rows]) == set(range(10))
    if limit is None:
        assert len(rows) == len(y)
        return
    draw = np.sort(np.random.default_rng(7).choice(len(y), limit, replace=False))
    assert set(draw) <= set(rows) and len(rows) == limit + len(set(range(10)) - set(y[draw]))
    regression = training_rows(y.astype(float), limit, seed=7, classify=False)
    assert np.array_equal(regression, draw)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("search.space.l2.low=20", "search.space.l2"),
        ("search.space.learning_rate.low=0", "search.space.learning_rate.low"),
        ("search.space.batch_size.choices=[]", "search.space.batch_size.choices"),
        ("+search.space.epochs.step=2", "search.space.epochs.step"),
        ("search.sampler.name=bayes", "search.sampler.name"),
        ("search.pruner.name=patient", "search.pruner.name"),
    ],
)
def test_bad_search_config_names_the_key(digits_root, tmp_path, override, key):
    extra = ["+search.space.epochs={low: 1, high: 3}"] if "epochs" in override else []
    with pytest.raises(ConfigError, match="^" + key.replace(".", r"\.")):
        compose_config(search_overrides(tmp_path, *extra, override, "tracking=off"))
    assert list(tmp_path.iterdir()) == []  # checked before anything is created


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+search.space.dropout={low: 0.5, high: 1.5}", "search.space.dropout: 1.5 is not a value"),
        ("search.space.batch_size={choices: [abc]}", "search.space.batch_size: 'abc' is not"),
        ("+search.space.activation={choices: [relu, bogus]}", "search.space.activation: 'bogus'"),
        ("search.space.batch_size={choices: [0, 10]}", "search.space.batch_size: 0 is not"),
    ],
)
def test_a_space_beyond_what_the_estimator_takes_is_a_config_error(tmp_path, override, message):
    from pipeline.search.settings import validate_settings

    cfg = compose_config(search_overrides(tmp_path, override, "tracking=off"))
    with pytest.raises(ConfigError, match=f"^{message}"):
        validate_settings(cfg)


def test_bad_data_stops_the_search_before_its_study_is_stored(digits_root, tmp_path):
    shutil.copytree(digits_root / "data", tmp_path / "data")
    val = tmp_path / "data" / "prepared" / "val.npz"
    with np.load(val) as arrays:
        X, y = arrays["X"], arrays["y"]
    save_arrays(val, X=X, y=np.where(np.arange(len(y)) == 0, 99, y))
    cfg = compose_config(search_overrides(tmp_path, "tracking=off"))
    with pytest.raises(ArtifactError, match=r"val.npz: labels \[99\] outside the dataset's"):
        search.run(cfg)
    assert not (tmp_path / "optuna.db").exists()


def test_unreachable_storage_is_a_clear_error(digits_root):
    cfg = compose_config(
        search_overrides(
            digits_root,
            "tracking=off",
            storage="postgresql+psycopg2://nndl:secret@127.0.0.1:9/none",
        )
    )
    with pytest.raises(ConfigError, match="search.storage=.*nndl:\\*\\*\\*@") as info:
        search.run(cfg)
    assert "secret" not in str(info.value)


def search_command(root: Path, *extra: str, storage: str | None = None) -> list[str]:
    args = search_overrides(root, "tracking=off", *extra, storage=storage)
    return [sys.executable, "-m", "pipeline.search", *args]


def run_workers_on_one_study(root: Path, storage: str | None, n_trials: int) -> optuna.Study:
    """search.workers=2 in one command, plus a second command at the same time."""
    args = [f"search.n_trials={n_trials}", "search.study_name=shared", "search.epochs=2"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    two = subprocess.Popen(
        search_command(root, *args, "search.workers=2", storage=storage), cwd=ROOT, env=env
    )
    one = subprocess.Popen(search_command(root, *args, storage=storage), cwd=ROOT, env=env)
    assert two.wait(timeout=600) == 0 and one.wait(timeout=600) == 0
    cfg = compose_config(search_overrides(root, *args, storage=storage))
    return study_of(cfg)


def test_three_workers_share_one_study_exactly(digits_root):
    study = run_workers_on_one_study(digits_root, None, n_trials=12)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(12))  # exactly 12, no duplicate numbers
    assert states(study)["COMPLETE"] + states(study)["PRUNED"] == 12


def postgres_url() -> str | None:
    return os.environ.get("POSTGRES_URL")


@pytest.mark.skipif(postgres_url() is None, reason="POSTGRES_URL not set (CI sets it)")
def test_workers_share_a_postgresql_study(digits_root):
    study = run_workers_on_one_study(digits_root, postgres_url(), n_trials=8)
    assert sorted(t.number for t in study.trials) == list(range(8))
    optuna.delete_study(study_name=study.study_name, storage=postgres_url())


def test_killed_search_resumes_and_retries_the_stale_trial(digits_root):
    """SIGKILL a search mid-trial; the rerun fails the stale trial, retries it, finishes."""
    # 30 epochs without early stopping, and the kill lands early in a running trial: a
    # trial that ends between the poll and the kill would leave nothing stale to recover.
    args = ["search.n_trials=6", "search.study_name=killed", "search.epochs=30"]
    args += ["search.pruner.name=none", "search.space.batch_size.choices=[10]"]
    args += ["train.early_stopping=false"]
    cfg = compose_config(search_overrides(digits_root, *args))
    process = subprocess.Popen(search_command(digits_root, *args), cwd=ROOT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        try:
            trials = study_of(cfg).trials
        except KeyError:  # study not created yet
            continue
        finished = [t for t in trials if t.state == TrialState.COMPLETE]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if finished and running and 1 <= len(running[0].intermediate_values) <= 10:
            break
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    trials = study_of(cfg).trials
    before = {t.number: t.value for t in trials if t.state == TrialState.COMPLETE}
    assert before, "no trial completed before the kill"
    assert any(t.state == TrialState.RUNNING for t in trials), "no trial running at the kill"
    time.sleep(4)  # past the grace period: the running trial is stale

    rerun = subprocess.run(search_command(digits_root, *args), cwd=ROOT, timeout=600)
    assert rerun.returncode == 0
    study = study_of(cfg)
    counts = states(study)
    assert counts["COMPLETE"] == 6 and counts["FAIL"] >= 1
    assert {t.number: t.value for t in study.trials if t.number in before} == before
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") is not None]
    assert {t.system_attrs["failed_trial"] for t in retried} >= {t.number for t in failed}
    assert all(study.trials[t.system_attrs["failed_trial"]].params == t.params for t in retried)
