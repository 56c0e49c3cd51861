"""Train stage: fit the configured network on the augmented training split.

    python -m pipeline.train                       # the default model (conf/config.yaml)
    python -m pipeline.train model=mlp train.learning_rate=0.1

Reads ``${paths.augmented}/train.npz`` and ``${paths.prepared}/val.npz`` (monitored every
epoch); writes the model (``${paths.model}.npz`` + ``.json``), the per-epoch history
(``${paths.history}``, a CSV for ``dvc plots``) and ``${paths.run}`` (the MLflow run that
evaluate continues). Logs params, per-epoch metrics and the model to MLflow.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from pipeline.config import stage_main, with_search_result
from pipeline.errors import ConfigError
from pipeline.io import ArtifactError, check_writable, file_checksum, write_json, write_text
from pipeline.tracking import TrackingError, git_commit, mask_secrets
from pipeline.tracking_process import tracker_process_from_config

if TYPE_CHECKING:
    from pipeline.estimators import EpochInfo


def history_csv(history: list[dict]) -> str:
    fields = list(history[0]) if history else ["epoch"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


class ProgressBar:
    """One tqdm bar over the epochs, showing the latest loss and validation accuracy."""

    def __init__(self, epochs: int, desc: str) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=epochs, desc=desc, unit="epoch", dynamic_ncols=True)

    def __call__(self, info: EpochInfo) -> None:
        postfix = {"loss": f"{info.train_loss:.4f}"}
        if info.validation_accuracy is not None:
            postfix["val_acc"] = f"{info.validation_accuracy:.4f}"
        self.bar.set_postfix(postfix)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run(cfg: DictConfig) -> dict:
    """Train, save and log; returns a summary (epochs, best validation accuracy, paths)."""
    cfg, provenance = with_search_result(cfg)
    paths = cfg.paths
    model_file = Path(f"{paths.model}.npz")
    check_writable(model_file, model_file.with_suffix(".json"), paths.history, paths.run)
    # MLflow loads in the tracking process while this one loads scikit-learn and the data.
    tracker = tracker_process_from_config(cfg, for_model=cfg.tracking.log_model)
    # scikit-learn and the networks load here, not on import: `--help` answers at once.
    from pipeline.artifacts import save_model
    from pipeline.factory import build_estimator, dataset_meta, training_splits

    train, val = training_splits(cfg)
    meta = dataset_meta(cfg)
    prepared_meta_checksum = file_checksum(Path(paths.prepared) / "meta.json")
    estimator = build_estimator(cfg, train.image_shape)

    tracker.start(
        run_name=f"{cfg.model.name}-{meta['dataset']}",
        tags={
            "git_commit": git_commit(),
            "dvc_stage": "train",
            "dataset": meta["dataset"],
            "dataset_checksum": file_checksum(Path(paths.augmented) / "train.npz"),
            "model": cfg.model.name,
            "params_source": provenance["params_source"],
        },
    )
    tracker.close_stale_runs()  # runs of trainings that were killed (SIGKILL) end KILLED
    tracker.log_config(cfg)

    history: list[dict] = []
    progress = ProgressBar(estimator.epochs, f"train {cfg.model.name}")
    started = time.perf_counter()
    try:
        with threadpool_limits(limits=cfg.train.threads):
            estimator.fit(
                train.X,
                train.y,
                validation_data=(val.X, val.y),
                callbacks=[
                    lambda info: history.append({"epoch": info.epoch, **info.metrics()}),
                    tracker.epoch_logger(),
                    progress,
                ],
            )
    except KeyboardInterrupt:
        tracker.end(status="KILLED")  # not MLflow's atexit default, FINISHED
        raise
    except BaseException:
        tracker.end(status="FAILED")
        raise
    finally:
        progress.close()
    seconds = time.perf_counter() - started

    model_path = save_model(estimator, paths.model)
    write_text(paths.history, history_csv(history))
    summary = {
        "epochs": estimator.n_iter_,
        "best_val_accuracy": estimator.best_validation_score_,
        "train_seconds": round(seconds, 2),
        "samples_per_second": round(len(train.y) * estimator.n_iter_ / seconds, 1),
        "n_train": len(train.y),
    }
    tracker.log_metrics(summary)
    tracker.log_artifact(model_path, "weights")
    tracker.log_artifact(model_path.with_suffix(".json"), "weights")
    tracker.log_artifact(paths.history)
    if cfg.tracking.log_model:
        tracker.log_saved_model(model_path, val.X[:5])
    tracker.end()
    write_json(
        paths.run,
        {
            "run_id": tracker.run_id if tracker.active else None,
            "tracking_uri": mask_secrets(tracker.uri) if tracker.active else None,
            "experiment": tracker.experiment if tracker.active else None,
            **provenance,
            "model": cfg.model.name,
            "prepared_meta_sha256": prepared_meta_checksum,
        },
    )
    print(
        f"trained {cfg.model.name}: {summary['epochs']} epochs, best validation accuracy "
        f"{summary['best_val_accuracy']:.4f}, {summary['train_seconds']} s -> {model_path}"
    )
    return {**summary, "model": str(model_path), "run_id": tracker.run_id}


def main() -> None:
    # ArithmeticError: the estimators' DivergenceError (not imported here, see run).
    stage_main(
        run, (ArtifactError, ConfigError, ArithmeticError, TrackingError, ValueError, OSError)
    )


if __name__ == "__main__":
    main()
