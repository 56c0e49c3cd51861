"""The files the pipeline writes: atomic writes, npz arrays, JSON, and fitted models.

Every output goes through :func:`atomic_path`: it is written to a temporary file in the
target's directory and renamed over the target only when complete, so an interrupted run
never leaves a half-written file that a later stage could take as valid.

Models are stored without pickle: ``NAME.npz`` holds the weights, ``NAME.json`` the
estimator's class, parameters, classes and training curves. Arrays are always loaded with
``allow_pickle=False``, so a tampered file cannot execute code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.estimators import CNNClassifier, MLPClassifier

MODEL_FORMAT_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)
ESTIMATOR_CLASSES = {cls.__name__: cls for cls in (MLPClassifier, CNNClassifier)}


class ArtifactError(ValueError):
    """A file the pipeline reads is missing, malformed or not what it claims to be."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was; an OSError
    (read-only directory, disk full) is raised again naming ``path``, not the temporary file.
    """
    target = Path(path)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {target}: {err.strerror or err}") from err
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, _json_text(data))


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found" + (" (a directory)" if path.is_dir() else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: not valid JSON ({err})") from None


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to an uncompressed ``.npz``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_arrays(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file, never unpickling; ``required`` keys must be present."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found" + (" (a directory)" if path.is_dir() else ""))
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as err:  # object arrays need pickle: refused
        raise ArtifactError(f"{path}: refused, holds pickled objects ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise ArtifactError(f"{path}: not a valid .npz file ({err})") from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise ArtifactError(f"{path}: missing arrays {missing}; has {sorted(arrays)}")
    return arrays


def new_hash(algorithm: str):
    """A fresh hash object; MD5 is used for integrity only, never for security."""
    return hashlib.new(algorithm, usedforsecurity=False)


def file_checksum(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: new_hash(algorithm)).hexdigest()


# Which stage writes the splits in a directory named so (for the "run X first" hint).
_WRITER = {"prepared": "prepare", "augmented": "augment"}


def load_images(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A split written by prepare or augment, checked: ``X`` float32 (n, h, w) in [0, 1]
    and ``y`` int64 labels >= 0."""
    path = Path(path)
    if not path.is_file():
        stage = _WRITER.get(path.parent.name, "prepare")
        raise ArtifactError(f"{path}: file not found; run `python -m pipeline.{stage}` first")
    arrays = load_arrays(path, required=("X", "y"))
    X, y = arrays["X"], arrays["y"]
    if X.dtype != np.float32 or X.ndim != 3:
        raise ArtifactError(f"{path}: X must be float32 (n, h, w), got {X.dtype} {X.shape}")
    if y.dtype != np.int64 or y.shape != (len(X),):
        raise ArtifactError(f"{path}: y must be int64 of length {len(X)}, got {y.dtype} {y.shape}")
    if len(X) == 0:
        raise ArtifactError(f"{path}: holds no images")
    if not np.isfinite(X).all() or X.min() < 0 or X.max() > 1:
        raise ArtifactError(f"{path}: X must lie in [0, 1]")
    if y.min() < 0:
        raise ArtifactError(f"{path}: negative labels")
    return X, y


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the estimators' defaults use: [[20, 5, 2]] -> ((20, 5, 2),)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# --- models --------------------------------------------------------------------------------
def _model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``models/model`` or ``models/model.npz`` -> (models/model.npz, models/model.json)."""
    base = Path(path)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    return base.with_suffix(".npz"), base.with_suffix(".json")


def save_model(estimator: MLPClassifier | CNNClassifier, path: str | os.PathLike) -> Path:
    """Write a fitted estimator as ``path.npz`` (weights) + ``path.json`` (everything else).

    Returns the path of the ``.npz`` file.
    """
    if not hasattr(estimator, "network_"):
        raise ValueError("save_model needs a fitted estimator")
    npz_path, json_path = _model_paths(path)
    params = estimator.get_params()
    if not (params["random_state"] is None or isinstance(params["random_state"], int)):
        params["random_state"] = None  # a RandomState object has no JSON form
    classes = estimator.classes_
    meta = {
        "format_version": MODEL_FORMAT_VERSION,
        "estimator": type(estimator).__name__,
        "params": params,
        "classes": classes.tolist(),
        "classes_dtype": classes.dtype.str if classes.dtype.kind != "O" else "str",
        "n_features_in": int(estimator.n_features_in_),
        "n_iter": int(estimator.n_iter_),
        "loss_curve": estimator.loss_curve_,
        "validation_scores": estimator.validation_scores_,
        "validation_loss_curve": estimator.validation_loss_curve_,
        "best_validation_score": estimator.best_validation_score_,
        "learning_rate_curve": estimator.learning_rate_curve_,
        "gradient_norms": estimator.gradient_norms_,
    }
    # Both files are written in full before either replaces its predecessor (a full disk
    # fails before any rename); the description names the weights' checksum, so the pair
    # left by a crash between the two renames is refused by load_model.
    with atomic_path(npz_path) as npz_tmp, atomic_path(json_path) as json_tmp:
        with open(npz_tmp, "wb") as fh:
            np.savez(fh, **estimator.network_.get_state())
        meta["weights_sha256"] = file_checksum(npz_tmp)
        json_tmp.write_text(_json_text(meta), encoding="utf-8")
    return npz_path


def load_model(path: str | os.PathLike) -> MLPClassifier | CNNClassifier:
    """Rebuild an estimator written by :func:`save_model`; refuses anything else."""
    npz_path, json_path = _model_paths(path)
    meta = read_json(json_path)
    expected = meta.get("weights_sha256") if isinstance(meta, dict) else None
    if expected is not None and npz_path.is_file() and file_checksum(npz_path) != expected:
        raise ArtifactError(
            f"{npz_path}: its checksum is not the weights_sha256 of {json_path}; the two files "
            "were not written together (an interrupted save?) or were changed"
        )
    try:
        if meta["estimator"] not in ESTIMATOR_CLASSES:
            raise ArtifactError(
                f"{json_path}: unknown estimator {meta['estimator']!r}; "
                f"expected one of {sorted(ESTIMATOR_CLASSES)}"
            )
        cls = ESTIMATOR_CLASSES[meta["estimator"]]
        if meta["format_version"] != MODEL_FORMAT_VERSION:
            raise ArtifactError(
                f"{json_path}: format_version {meta['format_version']!r} is not "
                f"{MODEL_FORMAT_VERSION}"
            )
        estimator = cls(**{key: _tuples(value) for key, value in meta["params"].items()})
        estimator._validate_params()
        dtype = object if meta["classes_dtype"] == "str" else np.dtype(meta["classes_dtype"])
        classes = np.asarray(meta["classes"], dtype=dtype)
        n_features = int(meta["n_features_in"])
    except KeyError as err:
        raise ArtifactError(f"{json_path}: missing or unknown field {err}") from None
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"{json_path}: invalid model description ({err})") from None
    estimator._initialize(n_features, classes)
    try:
        weights = load_arrays(npz_path)
        for name, array in weights.items():
            if array.dtype.kind != "f" or not np.isfinite(array).all():
                raise ArtifactError(f"{npz_path}: array {name!r} is not finite float data")
        estimator.network_.set_state(weights)
    except ValueError as err:
        raise ArtifactError(f"{npz_path}: weights do not fit {json_path} ({err})") from None
    estimator.n_iter_ = int(meta.get("n_iter", 0))
    estimator.loss_curve_ = list(meta.get("loss_curve") or [])
    estimator.validation_scores_ = meta.get("validation_scores")
    estimator.validation_loss_curve_ = meta.get("validation_loss_curve")
    estimator.best_validation_score_ = meta.get("best_validation_score")
    estimator.learning_rate_curve_ = list(meta.get("learning_rate_curve") or [])
    estimator.gradient_norms_ = meta.get("gradient_norms")
    return estimator
