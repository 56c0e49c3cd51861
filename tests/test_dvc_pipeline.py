"""The DVC pipeline end to end, with the real ``dvc`` CLI, in a temporary git repository.

The repository is a copy of the project's pipeline files (``conf/``, ``pipeline/``,
``dvc.yaml``, ``params.yaml``, ``.dvc/config``, ...; no data, models, reports, ``dvc.lock``
or stores), its ``conf/`` edited for speed (digits, no augmentation, the MLP, 3 epochs, a
two-trial search that train does not use: ``train.use_search=false``, the documented way to
skip it) and MLflow and Optuna pointed at SQLite files in the temporary directory.

The copied ``pipeline/`` is there only because ``dvc.yaml`` declares the stages' code as
deps: the stages themselves import the installed package (``PYTHONSAFEPATH=1`` keeps the
working directory off ``sys.path``), whose own ``conf/`` is the project's, not the edited
one. So every value checked below also shows that the stages read the ``conf/`` of the
directory they run in.

The tests share one repository and run in file order, each step starting from the state
that the previous one left, as a user's session would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.dvc_project import describe, dvc, edit, fast_project, sh, stages_run

pytestmark = pytest.mark.slow

EPOCHS = 3


# --- helpers -------------------------------------------------------------------------------
def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return sh(repo, "git", *args)


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


def stages_updated(result: subprocess.CompletedProcess) -> list[str]:
    """Stages run, or restored from DVC's run cache (same deps and params ran before)."""
    pattern = r"Running stage '([^']+)'|Stage '([^']+)' is cached - skipping run"
    return ["".join(m) for m in re.findall(pattern, result.stdout + result.stderr)]


def model_params(repo: Path) -> dict:
    return json.loads((repo / "models" / "model.json").read_text())["params"]


def read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def experiments(repo: Path) -> dict[str, dict]:
    """``dvc exp show``: each experiment's name -> its params.yaml values and metrics."""
    shown = dvc(repo, "exp", "show", "--json")
    found = {}
    for baseline in json.loads(shown.stdout):
        for experiment in baseline.get("experiments") or []:
            for rev in experiment["revs"]:
                data = rev["data"]
                found[rev["name"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": data["metrics"]["reports/metrics.json"]["data"],
                }
    return found


# --- the repository ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC repository holding the pipeline with fast settings, not yet run."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tmp = tmp_path_factory.mktemp("dvc_pipeline")
    repo = tmp / "repo"
    # log_model off: ~6 s per train run; test_train_evaluate.py checks the logged model.
    fast_project(repo, tmp, EPOCHS, {"tracking/default.yaml": {"log_model": "false"}})

    # The stages must not import the copy: then only the working directory tells them which
    # conf/ to read (the package's own conf/ says mnist_sample and the CNN).
    where = sh(repo, "python", "-c", "import pipeline; print(pipeline.__file__)").stdout
    assert not Path(where.strip()).resolve().is_relative_to(repo.resolve()), where
    stages = list(read_yaml(repo / "dvc.yaml")["stages"])
    return {"repo": repo, "tmp": tmp, "uri": f"sqlite:///{tmp / 'mlflow.db'}", "stages": stages}


@pytest.fixture(scope="module")
def first_repro(project):
    """The first `dvc repro`, its results committed (so later diffs compare with them)."""
    repo = project["repo"]
    result = dvc(repo, "repro")
    commit(repo, "dvc repro")
    return result


# --- the steps, in order -------------------------------------------------------------------
def test_first_repro_runs_every_stage_and_writes_the_outputs(project, first_repro):
    repo = project["repo"]
    # The project trains without the search (train.use_search=false): no search stage.
    expected = [stage for stage in project["stages"] if stage != "search"]
    assert stages_run(first_repro) == expected, describe(first_repro)
    params = read_yaml(repo / "params.yaml")
    assert params["data"]["name"] == "digits" and params["model"]["name"] == "mlp", params
    assert params["tracking"]["uri"] == project["uri"] and len(params["conf_hash"]) == 64

    for split in ("train", "val", "test"):
        assert (repo / "data" / "prepared" / f"{split}.npz").is_file()
    assert (repo / "data" / "augmented" / "train.npz").is_file()
    for name in ("model.npz", "model.json", "mlflow_run.json"):
        assert (repo / "models" / name).is_file(), name
    reports = repo / "reports"
    for name in ("metrics.json", "evaluation.md", "history.csv", "predictions.csv"):
        assert (reports / name).is_file(), name
    for plot in ("learning_curves", "gradient_norms", "confusion_matrix", "misclassified"):
        assert (reports / "plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG", plot

    history = (reports / "history.csv").read_text().splitlines()
    assert len(history) == 1 + EPOCHS, history
    metrics = json.loads((reports / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.85, metrics
    assert metrics["epochs"] == EPOCHS, metrics

    model = model_params(repo)
    assert model["hidden_layer_sizes"] == [100] and model["cost"] == "cross_entropy", model
    assert model["epochs"] == EPOCHS and model["learning_rate"] == 0.5, model


def test_first_repro_logs_one_mlflow_run(project, first_repro):
    """One run holds train and evaluate; the search (not in this project's graph, which
    trains without it) logs nothing."""
    from mlflow.tracking import MlflowClient

    repo = project["repo"]
    client = MlflowClient(tracking_uri=project["uri"])
    experiment = client.get_experiment_by_name("nndl-pipeline")
    assert experiment is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([experiment.experiment_id])
    by_stage = {}
    for run in runs:
        by_stage.setdefault(run.data.tags.get("dvc_stage"), []).append(run)
    summary = {stage: len(found) for stage, found in by_stage.items()}
    assert len(by_stage.get("evaluate", [])) == 1, summary
    assert "train" not in by_stage, summary  # evaluate continued train's run
    assert "search" not in by_stage, summary
    assert by_stage["evaluate"][0].data.tags.get("params_source") == "config"

    run = by_stage["evaluate"][0]
    assert json.loads((repo / "models" / "mlflow_run.json").read_text())["run_id"] == (
        run.info.run_id
    )
    assert run.info.status == "FINISHED"
    assert run.data.params["data.name"] == "digits" and run.data.params["model.name"] == "mlp"
    assert run.data.params["train.learning_rate"] == "0.5"
    assert run.data.params["train.epochs"] == str(EPOCHS)
    assert run.data.tags["git_commit"] == git(repo, "rev-parse", "HEAD~1").stdout.strip()
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    steps = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in steps] == list(range(1, EPOCHS + 1))


def test_second_repro_does_nothing(project, first_repro):
    repo = project["repo"]
    result = dvc(repo, "repro")
    assert stages_run(result) == [], describe(result)
    assert "Data and pipelines are up to date" in result.stdout, describe(result)
    assert git(repo, "status", "--porcelain").stdout == "", "repro changed tracked files"


def test_conf_edit_reruns_exactly_the_affected_stages(project, first_repro):
    repo = project["repo"]
    edit(repo / "conf/train/mlp.yaml", r"^(\s*)learning_rate: .*$", r"\g<1>learning_rate: 0.25")
    result = dvc(repo, "repro")
    ran = stages_run(result)
    for stage in ("prepare", "augment"):
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout, describe(result)
    assert ran == ["params", "train", "evaluate"], describe(result)  # not the search
    assert model_params(repo)["learning_rate"] == 0.25
    assert read_yaml(repo / "params.yaml")["train"]["learning_rate"] == 0.25

    diff = dvc(repo, "params", "diff", "--json")
    learning_rate = json.loads(diff.stdout)["params.yaml"].get("train.learning_rate", {})
    assert (learning_rate.get("old"), learning_rate.get("new")) == (0.5, 0.25), describe(diff)
    commit(repo, "learning rate 0.25")


def test_exp_run_set_param_changes_what_train_uses(project, first_repro):
    repo = project["repo"]
    result = dvc(repo, "exp", "run", "-S", "train.learning_rate=0.5")
    ran = stages_updated(result)  # train at 0.5 ran in the first repro: restored from cache
    assert "train" in ran and "evaluate" in ran, describe(result)
    assert "prepare" not in ran and "augment" not in ran, describe(result)
    params = read_yaml(repo / "params.yaml")
    assert params["train"]["learning_rate"] == 0.5, params
    assert params["model"]["name"] == "mlp" and len(params["conf_hash"]) == 64, params
    assert model_params(repo)["learning_rate"] == 0.5

    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    exps = experiments(repo)
    assert len(exps) == 1, exps
    (exp,) = exps.values()
    assert exp["params"]["train"]["learning_rate"] == 0.5, exp["params"]["train"]
    assert exp["metrics"] == metrics, exp["metrics"]


def test_exp_run_switches_the_model(project, first_repro):
    repo = project["repo"]
    result = dvc(repo, "exp", "run", "-S", "model=ch1")
    ran = stages_updated(result)
    assert "train" in ran and "evaluate" in ran, describe(result)
    model = model_params(repo)
    assert model["hidden_layer_sizes"] == [30] and model["cost"] == "quadratic", model
    # ch1's own values from this repo's conf/ (its eta 3.0, epochs edited to EPOCHS), not
    # the previous experiment's learning rate and not the package's conf/ (30 epochs).
    assert model["learning_rate"] == 3.0 and model["epochs"] == EPOCHS, model
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert metrics["epochs"] == EPOCHS, metrics

    models = sorted(exp["params"]["model"]["name"] for exp in experiments(repo).values())
    assert models == ["ch1", "mlp"], models


def test_exp_run_use_search_trains_with_the_best_params(project, first_repro):
    repo = project["repo"]
    if "search" not in project["stages"]:
        pytest.skip("no search stage in dvc.yaml")
    result = dvc(repo, "exp", "run", "-S", "train.use_search=true")
    ran = stages_updated(result)
    assert "search@default" in ran and "train" in ran, describe(result)
    best = read_yaml(repo / "reports" / "search" / "best_params.yaml")["config"]["train"]
    model = model_params(repo)
    assert best and {key: model[key] for key in best} == pytest.approx(best), (best, model)


def test_without_the_search_a_search_setting_reruns_nothing(project, first_repro):
    """train.use_search=false (this project's default): the search is not in the graph."""
    repo = project["repo"]
    result = dvc(repo, "exp", "run", "-S", "train.use_search=false", "-S", "search.n_trials=99")
    ran = stages_updated(result)
    assert not any(stage.startswith("search") for stage in ran), describe(result)


def test_metrics_and_plots_show(project, first_repro):
    repo, tmp = project["repo"], project["tmp"]
    shown = dvc(repo, "metrics", "show", "--json")
    assert "test_accuracy" in shown.stdout, describe(shown)

    out = tmp / "dvc_plots"
    plots = dvc(repo, "plots", "show", "-o", out)
    html = (out / "index.html").read_text()
    assert "failed" not in (plots.stdout + plots.stderr).lower(), describe(plots)
    for title in ("Learning curves", "Cost per epoch", "learning_curves.png"):
        assert title in html, f"{title!r} missing from {out / 'index.html'}\n{describe(plots)}"
    assert not (repo / "dvc_plots").exists()


def test_hydra_command_line_outside_dvc(project, first_repro):
    repo = project["repo"]
    result = sh(repo, "python", "-m", "pipeline.train", "model=ch1", "tracking=off")
    model = model_params(repo)
    assert model["hidden_layer_sizes"] == [30] and model["epochs"] == EPOCHS, describe(result)
    assert json.loads((repo / "models" / "mlflow_run.json").read_text())["run_id"] is None
