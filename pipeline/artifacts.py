"""The pipeline's own files: image splits and fitted models, over :mod:`pipeline.io`.

Models are stored without pickle: ``NAME.npz`` holds the weights, ``NAME.json`` the
estimator's class, parameters and fitted attributes (its ``_get_state()``). Loading checks
the description against the ``.npz`` members' headers before any network is built, so a
tampered file is refused before it can allocate memory, and arrays are read with
``allow_pickle=False``, so it cannot execute code.

The I/O helpers of :mod:`pipeline.io` are re-exported here for the stages that import them
from this module.
"""

from __future__ import annotations

import os
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.estimators import CNNClassifier, MLPClassifier, MLPRegressor
from pipeline.io import (
    ArtifactError,
    atomic_path,
    file_checksum,
    json_text,
    load_arrays,
    new_hash,
    npz_headers,
    read_json,
    read_mapping,
    read_yaml,
    save_arrays,
    write_json,
    write_text,
)

__all__ = [
    "ESTIMATOR_CLASSES",
    "MODEL_CLASSES",
    "ArtifactError",
    "atomic_path",
    "file_checksum",
    "load_arrays",
    "load_images",
    "load_model",
    "new_hash",
    "read_json",
    "read_mapping",
    "read_yaml",
    "save_arrays",
    "save_model",
    "write_json",
    "write_text",
]

MODEL_FORMAT_VERSION = 1
# The estimators a training config can name (classifiers: the pipeline classifies images).
ESTIMATOR_CLASSES = {cls.__name__: cls for cls in (MLPClassifier, CNNClassifier)}
# Every estimator a model file can hold.
MODEL_CLASSES = {cls.__name__: cls for cls in (MLPClassifier, CNNClassifier, MLPRegressor)}
Estimator = MLPClassifier | CNNClassifier | MLPRegressor
# A model description larger than this is not one of ours (curves of a million epochs fit).
MAX_DESCRIPTION_BYTES = 64 * 2**20


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


def save_model(estimator: Estimator, path: str | os.PathLike) -> Path:
    """Write a fitted estimator as ``path.npz`` (weights) + ``path.json`` (everything else).

    Returns the path of the ``.npz`` file.
    """
    if not estimator.__sklearn_is_fitted__():
        raise ValueError("save_model needs a fitted estimator")
    npz_path, json_path = _model_paths(path)
    state, arrays = estimator._get_state()
    params = estimator.get_params()
    random_state = params["random_state"]
    # A RandomState object has no JSON form; numpy integers are written as ints.
    params["random_state"] = int(random_state) if isinstance(random_state, Integral) else None
    meta = {
        **state,
        "format_version": MODEL_FORMAT_VERSION,
        "estimator": type(estimator).__name__,
        "params": params,
    }
    # Both files are written in full before either replaces its predecessor (a full disk
    # fails before any rename); the description names the weights' checksum, so the pair
    # left by a crash between the two renames is refused by load_model.
    with atomic_path(npz_path) as npz_tmp, atomic_path(json_path) as json_tmp:
        with open(npz_tmp, "wb") as fh:
            np.savez(fh, **arrays)
        meta["weights_sha256"] = file_checksum(npz_tmp)
        json_tmp.write_text(json_text(meta), encoding="utf-8")
    return npz_path


def load_model(path: str | os.PathLike) -> Estimator:
    """Rebuild an estimator written by :func:`save_model`; refuses anything else.

    Every check runs before memory is allocated for the network: the description's
    fields, the weights' checksum, and the shapes it implies against the ``.npz`` members'
    headers (whose sizes are checked against the bytes they hold).
    """
    npz_path, json_path = _model_paths(path)
    meta = _read_description(json_path)
    expected = meta.get("weights_sha256")
    if expected is not None and npz_path.is_file() and file_checksum(npz_path) != expected:
        raise ArtifactError(
            f"{npz_path}: its checksum is not the weights_sha256 of {json_path}; the two files "
            "were not written together (an interrupted save?) or were changed"
        )
    if meta["estimator"] not in MODEL_CLASSES:
        raise ArtifactError(
            f"{json_path}: unknown estimator {meta['estimator']!r}; "
            f"expected one of {sorted(MODEL_CLASSES)}"
        )
    if meta["format_version"] != MODEL_FORMAT_VERSION:
        raise ArtifactError(
            f"{json_path}: format_version {meta['format_version']!r} is not {MODEL_FORMAT_VERSION}"
        )
    try:
        estimator = MODEL_CLASSES[meta["estimator"]](
            **{key: _tuples(value) for key, value in meta["params"].items()}
        )
        estimator._validate_params()
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"{json_path}: invalid model description ({err})") from None
    headers = npz_headers(npz_path)
    try:
        estimator._set_state(meta, headers)
    except KeyError as err:
        raise ArtifactError(f"{json_path}: missing or unknown field {err}") from None
    except ArtifactError:
        raise
    except (TypeError, ValueError, OverflowError) as err:
        raise ArtifactError(f"{npz_path}: weights do not fit {json_path} ({err})") from None
    return estimator


def _read_description(json_path: Path) -> dict[str, Any]:
    """The model description, checked to be one: a mapping with the fields every model has."""
    if json_path.is_file() and json_path.stat().st_size > MAX_DESCRIPTION_BYTES:
        raise ArtifactError(f"{json_path}: not a model file (over {MAX_DESCRIPTION_BYTES} bytes)")
    meta = read_json(json_path)
    if not isinstance(meta, dict):
        raise ArtifactError(f"{json_path}: not a model file (holds a {type(meta).__name__})")
    for key, kind in (("estimator", str), ("params", dict), ("format_version", int)):
        if key not in meta:
            raise ArtifactError(f"{json_path}: not a model file (no {key!r})")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise ArtifactError(
                f"{json_path}: not a model file ({key!r} is {meta[key]!r}, not a {kind.__name__})"
            )
    expected = meta.get("weights_sha256")
    if expected is not None and not isinstance(expected, str):
        raise ArtifactError(f"{json_path}: not a model file (weights_sha256 is {expected!r})")
    return meta
