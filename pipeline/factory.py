"""From a composed config to the objects a learning stage needs: data and an estimator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pipeline.artifacts import ESTIMATOR_CLASSES
from pipeline.config import to_container
from pipeline.config.files import AugmentedMeta, PreparedMeta, read_checked
from pipeline.data.splits import load_images
from pipeline.errors import ConfigError
from pipeline.estimators import CNNClassifier, MLPClassifier
from pipeline.io import ArtifactError, file_checksum

MODEL_DESCRIPTION_KEYS = ("name", "estimator")  # which network, not how it is built


@dataclass
class Split:
    """One split of a prepared dataset: images (n, h, w), flattened rows X, labels y."""

    images: np.ndarray
    y: np.ndarray

    @property
    def X(self) -> np.ndarray:
        return self.images.reshape(len(self.images), -1)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.images.shape[1:])


def load_split(path: str | Path) -> Split:
    """A split written by prepare or augment, checked (:func:`data.splits.load_images`)."""
    images, y = load_images(path)
    return Split(np.ascontiguousarray(images), y)


def training_splits(cfg: DictConfig) -> tuple[Split, Split]:
    """The augmented training split and the prepared validation split, checked to belong
    together: augment made the training split from the prepared training split in place
    now (its meta.json records that file's checksum), and the images match in shape. A
    stage run by hand after a new ``prepare`` would otherwise train on the old images."""
    augmented, prepared = Path(cfg.paths.augmented), Path(cfg.paths.prepared)
    train = load_split(augmented / "train.npz")
    val = load_split(prepared / "val.npz")
    meta_path = augmented / "meta.json"
    if not meta_path.is_file():
        raise ArtifactError(f"{meta_path}: file not found; run `python -m pipeline.augment`")
    source = read_checked(meta_path, AugmentedMeta)["input_sha256"]
    if source != file_checksum(prepared / "train.npz"):
        raise ArtifactError(
            f"{augmented / 'train.npz'}: augmented from another {prepared / 'train.npz'} than "
            "the one there now (checksums differ); run `python -m pipeline.augment` again"
        )
    if val.image_shape != train.image_shape:
        raise ArtifactError(
            f"{prepared / 'val.npz'}: images of shape {val.image_shape}, but the training "
            f"images are {train.image_shape}"
        )
    meta = dataset_meta(cfg)
    for path, split in ((augmented / "train.npz", train), (prepared / "val.npz", val)):
        check_labels(path, split.y, meta)
    return train, val


def dataset_meta(cfg: DictConfig) -> dict:
    """``${paths.prepared}/meta.json``, checked, and of the dataset the config names."""
    path = Path(cfg.paths.prepared) / "meta.json"
    meta = read_checked(path, PreparedMeta)
    if meta["dataset"] != cfg.data.name:
        raise ArtifactError(
            f"{path}: prepared from data={meta['dataset']}, but this stage has "
            f"data={cfg.data.name}; run `python -m pipeline.prepare data={cfg.data.name}`"
        )
    return meta


def check_labels(path: Path, y: np.ndarray, meta: dict) -> None:
    """Refuse labels of ``path`` outside the dataset's classes (``meta.json``)."""
    unknown = np.setdiff1d(y, meta["classes"])
    if unknown.size:
        raise ArtifactError(
            f"{path}: labels {unknown[:10].tolist()} outside the dataset's classes "
            f"{meta['classes']} (prepare's meta.json)"
        )


def estimator_params(cfg: DictConfig, overrides: dict | None = None) -> dict:
    """Estimator keyword arguments from ``model`` + ``train`` (+ e.g. searched values)."""
    model = to_container(cfg.model)
    # The model keys of another estimator (conv_layers, predict_flips for an MLP) hold the
    # schema's defaults here: the config's checks refuse any other value.
    accepted = ESTIMATOR_CLASSES[cfg.model.estimator]().get_params()
    params = {k: v for k, v in model.items() if k not in MODEL_DESCRIPTION_KEYS and k in accepted}
    # The train keys the estimator takes as parameters; the others (threads, use_search)
    # steer the stage.
    params.update({k: v for k, v in to_container(cfg.train).items() if k in accepted})
    params.update(overrides or {})
    params["random_state"] = cfg.seed
    return params


def build_estimator(
    cfg: DictConfig, image_shape: tuple[int, ...], overrides: dict | None = None
) -> MLPClassifier | CNNClassifier:
    """The estimator the config describes, sized for images of ``image_shape``."""
    params = estimator_params(cfg, overrides)
    cls = ESTIMATOR_CLASSES[cfg.model.estimator]
    if cls is not CNNClassifier:
        return cls(**params)
    params["image_shape"] = tuple(image_shape)
    estimator = cls(**params)
    try:  # the layers sized for these images, nothing allocated: a kernel that does not fit
        estimator._parameter_shapes(int(np.prod(image_shape)), 2)
    except ValueError as err:
        raise ConfigError(f"model.{err}") from None
    return estimator
