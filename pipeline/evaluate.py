"""Evaluate stage: score the trained model on the test split and write the reports.

    python -m pipeline.evaluate

Reads the model (``${paths.model}``), the test split and the training history; writes
``${paths.metrics}`` (DVC metrics), ``${paths.reports}/classification_report.json``,
``${paths.reports}/predictions.csv`` (for the DVC confusion plot), PNG plots under
``${paths.plots}`` and ``${paths.evaluation}``, a Markdown report embedding them. Logs all
of it into the MLflow run that train started.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig

from pipeline.config import stage_main
from pipeline.config.files import AugmentedMeta, RunFile, read_checked, read_history
from pipeline.errors import ConfigError
from pipeline.io import ArtifactError, check_writable, file_checksum, write_json, write_text
from pipeline.tracking import (
    NullTracker,
    Registration,
    TrackingError,
    git_commit,
    registered_model_name,
)
from pipeline.tracking_process import TrackerProcess, tracker_process_from_config

if TYPE_CHECKING:  # scikit-learn loads in run(), not on import
    from pipeline.estimators import CNNClassifier, MLPClassifier
    from pipeline.factory import Split


def training_set_size(cfg: DictConfig, meta: dict) -> int:
    """Images the model trained on: the augmented set when augment wrote one."""
    augmented = Path(cfg.paths.augmented) / "meta.json"
    if augmented.is_file():
        return int(read_checked(augmented, AugmentedMeta)["n_total"])
    return int(meta["counts"]["train"])


def training_run(cfg: DictConfig) -> dict:
    """What train recorded in ``${paths.run}``: its MLflow run (``run_id`` None when not
    tracked) and where its training values came from (defaults when the file is absent)."""
    run_file = Path(cfg.paths.run)
    return read_checked(run_file, RunFile) if run_file.is_file() else {"run_id": None}


def class_labels(labels: list[int], class_names: list[str] | None) -> list[str]:
    """How the reports show each class: "3 (Dress)" where the dataset names its classes
    (``data.class_names``, indexed by label), else the label."""
    if class_names is None:
        return [str(label) for label in labels]
    return [
        f"{label} ({class_names[label]})" if 0 <= label < len(class_names) else str(label)
        for label in labels
    ]


def check_model_fits(
    cfg: DictConfig, train_run: dict, estimator: MLPClassifier | CNNClassifier, test: Split
) -> None:
    """Refuse to score a model that does not belong to this config and these test images:
    one trained as another model or on another prepared dataset (per ``${paths.run}``,
    when train recorded it), one whose input is another image shape, or test labels the
    model never saw in training. (Run by hand, a stage can meet any of these.)"""
    model_file = f"{cfg.paths.model}.npz"
    if type(estimator).__name__ != cfg.model.estimator:
        raise ArtifactError(
            f"{model_file}: holds a model of class {type(estimator).__name__}, but "
            f"model={cfg.model.name} is of class {cfg.model.estimator}"
        )
    trained_as = train_run.get("model")
    if trained_as is not None and trained_as != cfg.model.name:
        raise ArtifactError(
            f"{model_file}: trained as model={trained_as} (per {cfg.paths.run}), "
            f"but this evaluate has model={cfg.model.name}"
        )
    prepared_meta = Path(cfg.paths.prepared) / "meta.json"
    trained_on = train_run.get("prepared_meta_sha256")
    if trained_on is not None and trained_on != file_checksum(prepared_meta):
        raise ArtifactError(
            f"{model_file}: trained on another prepared dataset than the one in "
            f"{prepared_meta.parent} now ({prepared_meta} changed since); run "
            "`python -m pipeline.train` again"
        )
    test_file = Path(cfg.paths.prepared) / "test.npz"
    input_shape = getattr(estimator, "image_shape", None)
    if input_shape is not None and tuple(input_shape) not in (
        test.image_shape,
        (*test.image_shape, 1),
    ):
        raise ArtifactError(
            f"{test_file}: images of shape {test.image_shape}, but {model_file} takes "
            f"{tuple(input_shape)}"
        )
    if estimator.n_features_in_ != test.X.shape[1]:
        raise ArtifactError(
            f"{test_file}: images of {test.X.shape[1]} pixels, but {model_file} takes "
            f"{estimator.n_features_in_}"
        )
    unseen = sorted(set(test.y.tolist()) - set(estimator.classes_.tolist()), key=str)
    if unseen:
        raise ArtifactError(
            f"{test_file}: labels {unseen[:10]} that {model_file} never saw in "
            f"training (its classes: {estimator.classes_.tolist()})"
        )


def values_source(run: dict) -> str | None:
    """One line for the report: the configured values, or the search's best trial with its
    validation score beside the baseline's (the configured values, trial 0); None when train
    did not record where its values came from."""
    if run.get("params_source") is None:
        return None
    search = run.get("search")
    if not search:
        return "the configured values (no search)"
    if search["value"] is None:  # a best_params.yaml that only held values
        return run["params_source"]
    text = (
        f"search study {search['study']}, trial {search['trial']}: validation {search['value']:.4f}"
    )
    if search.get("baseline_value") is not None:
        text += (
            f" vs {search['baseline_value']:.4f} for the configured values "
            f"(trial {search['baseline_trial']}), within the search's budget"
        )
    if search.get("best_trial") not in (None, search["trial"]):
        text += (
            f"; the best trial, {search['best_trial']} ({search['best_value']:.4f}), was "
            "within the validation split's noise (search.min_gain_se)"
        )
    return text


def predictions_csv(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    lines = ["actual,predicted"] + [f"{t},{p}" for t, p in zip(y_true, y_pred, strict=True)]
    return "\n".join(lines) + "\n"


def run(cfg: DictConfig) -> dict:
    """Score, plot, report and log; returns the metrics."""
    # First: MLflow loads in the tracking process while this one loads scikit-learn and
    # matplotlib, predicts and plots.
    tracker = tracker_process_from_config(cfg)
    # scikit-learn and matplotlib load here, not on import: `--help` answers at once.
    from sklearn.metrics import accuracy_score, classification_report, f1_score, log_loss

    from pipeline import reports
    from pipeline.artifacts import load_model
    from pipeline.factory import dataset_meta, load_split

    paths = cfg.paths
    grid = cfg.evaluate.misclassified_grid
    reports_dir, plots_dir = Path(paths.reports), Path(paths.plots)
    check_writable(
        paths.metrics,
        paths.evaluation,
        reports_dir / "classification_report.json",
        reports_dir / "predictions.csv",
        plots_dir / "learning_curves.png",
    )
    # Every input is read and checked before any output is written.
    estimator = load_model(paths.model)
    test = load_split(Path(paths.prepared) / "test.npz")
    meta = dataset_meta(cfg)
    history = read_history(paths.history)
    train_run = training_run(cfg)
    check_model_fits(cfg, train_run, estimator, test)
    run_id = train_run["run_id"]
    n_train = training_set_size(cfg, meta)

    proba = estimator.predict_proba(test.X)
    y_pred = estimator.classes_[proba.argmax(axis=1)]
    labels = estimator.classes_.tolist()
    metrics = {
        "test_accuracy": float(accuracy_score(test.y, y_pred)),
        "test_loss": float(log_loss(test.y, proba, labels=labels)),
        "macro_f1": float(f1_score(test.y, y_pred, average="macro")),
        "n_test": len(test.y),
        "n_train": n_train,
        "epochs": int(estimator.n_iter_),
        "best_val_accuracy": estimator.best_validation_score_,
    }
    search = train_run.get("search")
    if search and search["value"] is not None:
        metrics["search_chosen_val_accuracy"] = search["value"]  # the trial train used
        best = search.get("best_value")
        metrics["search_best_val_accuracy"] = search["value"] if best is None else best
        if search.get("baseline_value") is not None:
            metrics["search_baseline_val_accuracy"] = search["baseline_value"]
    per_class = classification_report(
        test.y, y_pred, labels=labels, output_dict=True, zero_division=0
    )
    names = meta.get("class_names")
    shown = class_labels(labels, names)
    per_class_rows = {
        name: per_class[str(label)] for label, name in zip(labels, shown, strict=True)
    }

    plots = {
        "learning_curves": reports.plot_learning_curves(history, plots_dir / "learning_curves.png"),
        "gradient_norms": reports.plot_gradient_norms(history, plots_dir / "gradient_norms.png"),
        "confusion_matrix": reports.plot_confusion_matrix(
            test.y,
            y_pred,
            labels,
            plots_dir / "confusion_matrix.png",
            display_labels=shown if names else None,
        ),
        "misclassified": reports.plot_misclassified(
            test.images,
            test.y,
            y_pred,
            plots_dir / "misclassified.png",
            limit=grid,
        ),
    }
    source = values_source(train_run)
    model_summary = {
        "name": cfg.model.name,
        "dataset": meta["dataset"],
        **({"training values": source} if source is not None else {}),
        **{k: v for k, v in estimator.get_params().items() if k != "random_state"},
    }
    write_json(paths.metrics, metrics)
    write_json(reports_dir / "classification_report.json", per_class)
    write_text(reports_dir / "predictions.csv", predictions_csv(test.y, y_pred))
    reports.write_evaluation_report(paths.evaluation, metrics, per_class_rows, model_summary, plots)

    registration = _log_to_mlflow(tracker, cfg, run_id, metrics, plots, meta["dataset"])
    print(
        f"test accuracy {metrics['test_accuracy']:.4f} on {metrics['n_test']} images "
        f"-> {paths.metrics}, {paths.evaluation}"
    )
    if registration is not None and registration.version is not None:
        print(
            f"registered {registration.name} version {registration.version}; champion: "
            f"version {registration.champion} ({registration.reason})"
        )
    return metrics


def _log_to_mlflow(
    tracker: TrackerProcess | NullTracker,
    cfg: DictConfig,
    run_id: str | None,
    metrics: dict,
    plots: dict,
    dataset: str,
) -> Registration | None:
    """Continue train's run (or start one if train was not tracked), log the results, and
    register the run's model (``nndl-<model>-<dataset>``): the ``champion`` alias moves to
    it only when it beats the champion on the same test split."""
    tracker.start(
        run_name=f"{cfg.model.name}-evaluate",
        run_id=run_id,
        tags={"git_commit": git_commit(), "dvc_stage": "evaluate"},
    )
    if run_id is None:
        tracker.log_config(cfg)
    tracker.log_metrics({k: v for k, v in metrics.items() if isinstance(v, int | float)})
    for path in plots.values():
        if path is not None:
            tracker.log_artifact(path, "plots")
    for name in ("evaluation.md", "classification_report.json", "metrics.json"):
        tracker.log_artifact(Path(cfg.paths.reports) / name, "reports")
    registration = None
    if run_id is not None and cfg.tracking.log_model:  # train logged a model into this run
        registration = tracker.register_champion(
            registered_model_name(cfg.model.name, dataset),
            "test_accuracy",
            metrics["test_accuracy"],
            file_checksum(Path(cfg.paths.prepared) / "test.npz"),
        )
    tracker.end()
    return registration


def main() -> None:
    stage_main(run, (ArtifactError, ConfigError, TrackingError, ValueError, OSError))


if __name__ == "__main__":
    main()
