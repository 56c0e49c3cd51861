"""The train and evaluate stages on digits, through Hydra's compose API, with MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipeline import augment, evaluate, prepare, train
from pipeline.artifacts import load_model
from pipeline.config import compose_config
from pipeline.errors import ConfigError
from pipeline.estimators import DivergenceError
from pipeline.io import ArtifactError, file_checksum, save_arrays
from tests.conftest import stage_overrides
from tests.environ import child_environment

FAST_MLP = [
    "data=digits", "augment=none", "model=mlp", "train.epochs=4", "train.l2=0.1",
    "train.use_search=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """prepare -> augment -> train -> evaluate once on digits; the config and results."""
    root = tmp_path_factory.mktemp("pipeline")
    cfg = compose_config(stage_overrides(root, *FAST_MLP))
    prepare.run(cfg)
    augment.run(cfg)
    summary = train.run(cfg)
    metrics = evaluate.run(cfg)
    return cfg, summary, metrics


def test_train_writes_model_history_and_run(trained):
    cfg, summary, _ = trained
    model = load_model(cfg.paths.model)
    assert model.n_iter_ == summary["epochs"] == 4
    assert model.get_params()["learning_rate"] == cfg.train.learning_rate
    history = Path(cfg.paths.history).read_text().splitlines()
    assert history[0].startswith("epoch,train_loss,val_loss,val_accuracy,learning_rate")
    assert "grad_norm_dense1" in history[0] and len(history) == 1 + 4
    run = json.loads(Path(cfg.paths.run).read_text())
    assert run["run_id"] == summary["run_id"]
    assert run["model"] == "mlp"
    assert run["prepared_meta_sha256"] == file_checksum(Path(cfg.paths.prepared) / "meta.json")


def test_evaluate_metrics_and_reports(trained):
    cfg, summary, metrics = trained
    assert metrics["test_accuracy"] >= 0.9
    on_disk = json.loads(Path(cfg.paths.metrics).read_text())
    assert on_disk["test_accuracy"] == metrics["test_accuracy"]
    assert on_disk["n_test"] == 270 and on_disk["epochs"] == 4
    report = Path(cfg.paths.evaluation).read_text()
    for plot in ("learning_curves", "gradient_norms", "confusion_matrix", "misclassified"):
        assert f"plots/{plot}.png" in report
        with open(f"{cfg.paths.plots}/{plot}.png", "rb") as png:
            assert png.read(4) == b"\x89PNG"
    assert "Per-class precision" in report and f"{100 * metrics['test_accuracy']:.2f}%" in report
    predictions = (Path(cfg.paths.reports) / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "actual,predicted" and len(predictions) == 271


def test_one_mlflow_run_holds_train_and_evaluate(trained):
    cfg, summary, metrics = trained
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.learning_rate"] == str(cfg.train.learning_rate)
    assert run.data.params["model.name"] == "mlp" and run.data.params["data.name"] == "digits"
    assert run.data.tags["dvc_stage"] == "evaluate"  # the last stage to touch the run
    assert len(run.data.tags["dataset_checksum"]) == 64
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    steps = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in steps] == [1, 2, 3, 4]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "reports", "weights"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/learning_curves.png" in plots
    assert run.data.tags["params_source"] == "config"  # train.use_search=false


def test_evaluate_registers_the_model_as_champion(trained):
    cfg, summary, metrics = trained
    client = MlflowClient(tracking_uri=cfg.tracking.uri, registry_uri=cfg.tracking.uri)
    champion = client.get_model_version_by_alias("nndl-mlp-digits", "champion")
    assert champion.run_id == summary["run_id"]
    assert float(champion.tags["test_accuracy"]) == pytest.approx(metrics["test_accuracy"])
    mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.set_registry_uri(cfg.tracking.uri)  # an earlier test may have set another
    model = mlflow.sklearn.load_model("models:/nndl-mlp-digits@champion")
    X = np.random.default_rng(1).random((4, 64)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(X), load_model(cfg.paths.model).predict(X))


def test_logged_model_loads_as_pyfunc_and_as_sklearn(trained):
    cfg, summary, _ = trained
    mlflow.set_tracking_uri(cfg.tracking.uri)
    uri = f"runs:/{summary['run_id']}/model"
    X = np.random.default_rng(0).random((3, 64)).astype(np.float32)
    expected = load_model(cfg.paths.model).predict(X)
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(uri).predict(X), expected)
    sk = mlflow.sklearn.load_model(uri)
    np.testing.assert_array_equal(sk.predict(X), expected)


def test_command_line_override_reaches_the_estimator(trained, tmp_path):
    cfg, *_ = trained
    other = compose_config(
        stage_overrides(tmp_path, *FAST_MLP, "train.learning_rate=0.05", "tracking=off")
    )
    other.paths.prepared, other.paths.augmented = cfg.paths.prepared, cfg.paths.augmented
    result = train.run(other)
    assert load_model(other.paths.model).get_params()["learning_rate"] == 0.05
    assert result["run_id"] is None
    assert json.loads(Path(other.paths.run).read_text())["run_id"] is None


def test_cnn_model_config_builds_the_chapter_6_network(trained, tmp_path):
    cfg, *_ = trained
    other = compose_config(
        stage_overrides(
            tmp_path, "data=digits", "model=cnn", "model.conv_layers=[[4,3,2]]",
            "train.epochs=1", "tracking=off", "train.use_search=false",
        )
    )  # fmt: skip
    other.paths.prepared, other.paths.augmented = cfg.paths.prepared, cfg.paths.augmented
    train.run(other)
    model = load_model(other.paths.model)
    assert type(model).__name__ == "CNNClassifier" and model.n_features_in_ == 64


def test_divergence_is_a_clear_stage_error(trained, tmp_path):
    cfg, *_ = trained
    other = compose_config(
        stage_overrides(
            tmp_path, *FAST_MLP, "model.activation=relu", "train.learning_rate=1e30",
            "tracking=off",
        )
    )  # fmt: skip
    other.paths.prepared, other.paths.augmented = cfg.paths.prepared, cfg.paths.augmented
    with pytest.raises(DivergenceError, match="diverged"):
        train.run(other)
    assert not (tmp_path / "models" / "model.npz").exists()


def test_unknown_model_parameter_is_named(trained, tmp_path):
    cfg, *_ = trained
    with pytest.raises(ConfigError, match="^model.hiden: unknown key"):
        compose_config(stage_overrides(tmp_path, *FAST_MLP, "+model.hiden=3", "tracking=off"))


def test_missing_training_data_with_tracking_on_is_one_line_and_creates_no_store(tmp_path):
    # train imports MLflow on a thread while it reads its data: a stage that stops there must
    # neither create the store nor print anything after its error line.
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.train", *stage_overrides(tmp_path, *FAST_MLP)],
        cwd=Path(__file__).resolve().parents[1],
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: {tmp_path / 'data' / 'augmented' / 'train.npz'}: file not found; run "
        "`python -m pipeline.augment` first"
    ]
    assert not list(tmp_path.rglob("mlflow.db"))


def _stage_files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_train_refuses_an_augmented_set_made_from_other_prepared_data(tmp_path):
    cfg = compose_config(stage_overrides(tmp_path, *FAST_MLP, "tracking=off"))
    prepare.run(cfg)
    augment.run(cfg)
    prepare.run(compose_config(stage_overrides(tmp_path, *FAST_MLP, "tracking=off", "seed=7")))
    with pytest.raises(ArtifactError, match="augmented from another .*prepared/train.npz"):
        train.run(cfg)
    (tmp_path / "data/augmented/meta.json").unlink()
    with pytest.raises(ArtifactError, match="augmented/meta.json: file not found; run"):
        train.run(cfg)
    assert not (tmp_path / "models" / "model.npz").exists()


def test_evaluate_refuses_a_model_that_is_not_this_configs(tmp_path):
    cfg = compose_config(stage_overrides(tmp_path, *FAST_MLP, "train.epochs=1", "tracking=off"))
    prepare.run(cfg)
    augment.run(cfg)
    train.run(cfg)
    before = _stage_files(tmp_path)
    other_model = compose_config(
        stage_overrides(tmp_path, "data=digits", "augment=none", "model=ch1", "tracking=off")
    )
    with pytest.raises(ArtifactError, match="trained as model=mlp .* this evaluate has model=ch1"):
        evaluate.run(other_model)

    test_file = tmp_path / "data/prepared/test.npz"
    X, y = np.load(test_file)["X"], np.load(test_file)["y"]
    save_arrays(test_file, X=X, y=np.where(y == 3, 12, y))
    with pytest.raises(ArtifactError, match=r"labels \[12\] that .*model.npz never saw"):
        evaluate.run(cfg)
    save_arrays(test_file, X=X[:, :4], y=y)
    with pytest.raises(ArtifactError, match="images of 32 pixels, but .*model.npz takes 64"):
        evaluate.run(cfg)
    save_arrays(test_file, X=X, y=y)
    assert _stage_files(tmp_path) == before

    prepare.run(compose_config(stage_overrides(tmp_path, *FAST_MLP, "tracking=off", "seed=7")))
    with pytest.raises(ArtifactError, match="trained on another prepared dataset"):
        evaluate.run(cfg)
    assert not (tmp_path / "reports/metrics.json").exists()


def test_evaluate_refuses_a_cnn_for_other_image_shapes(tmp_path):
    cfg = compose_config(
        stage_overrides(
            tmp_path, "data=digits", "augment=none", "model=cnn", "model.conv_layers=[[4,3,2]]",
            "train.epochs=1", "tracking=off", "train.use_search=false",
        )
    )  # fmt: skip
    prepare.run(cfg)
    augment.run(cfg)
    train.run(cfg)
    test_file = tmp_path / "data/prepared/test.npz"
    X, y = np.load(test_file)["X"], np.load(test_file)["y"]
    save_arrays(test_file, X=X.reshape(len(X), 4, 16), y=y)  # as many pixels, another shape
    with pytest.raises(ArtifactError, match=r"images of shape \(4, 16\), but .* takes \(8, 8\)"):
        evaluate.run(cfg)


def test_reports_name_the_classes_the_dataset_names(tmp_path):
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    overrides = [*FAST_MLP, "train.epochs=1", "tracking=off"]
    cfg = compose_config(
        stage_overrides(tmp_path, *overrides, f"+data.class_names=[{','.join(names)}]")
    )
    prepare.run(cfg)
    assert json.loads((tmp_path / "data/prepared/meta.json").read_text())["class_names"] == names
    augment.run(cfg)
    train.run(cfg)
    evaluate.run(cfg)
    report = Path(cfg.paths.evaluation).read_text()
    assert "| 3 (three) |" in report and "| 9 (nine) |" in report
    per_class = json.loads((Path(cfg.paths.reports) / "classification_report.json").read_text())
    assert "3" in per_class  # the machine-readable files keep the labels


def test_stages_refuse_data_of_another_dataset_or_classes(tmp_path):
    cfg = compose_config(stage_overrides(tmp_path, *FAST_MLP, "train.epochs=1", "tracking=off"))
    prepare.run(cfg)
    augment.run(cfg)
    mnist = compose_config(
        stage_overrides(tmp_path, "model=mlp", "train.use_search=false", "tracking=off")
    )
    with pytest.raises(ArtifactError, match="prepared from data=digits, but this stage has"):
        train.run(mnist)

    augmented = tmp_path / "data/augmented/train.npz"
    X, y = np.load(augmented)["X"], np.load(augmented)["y"]
    save_arrays(augmented, X=X, y=np.where(np.arange(len(y)) == 0, 99, y))
    # (augment's meta.json names the prepared file, not this one: only the labels are wrong)
    with pytest.raises(ArtifactError, match=r"augmented/train.npz: labels \[99\] outside"):
        train.run(cfg)
    save_arrays(augmented, X=X, y=y)

    train.run(cfg)
    Path(cfg.paths.run).unlink()  # without train's record, the model itself is checked
    cnn = compose_config(
        stage_overrides(
            tmp_path, "data=digits", "augment=none", "model=cnn", "tracking=off",
            "model.conv_layers=[[4,3,2]]",
        )
    )  # fmt: skip
    with pytest.raises(
        ArtifactError, match="model.npz: holds a model of class MLPClassifier, but model=cnn"
    ):
        evaluate.run(cnn)
