"""The split files prepare and augment write: ``X`` float32 (n, h, w) in [0, 1], ``y`` int64."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.io import ArtifactError, load_arrays

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
    if 0 in X.shape[1:]:
        raise ArtifactError(f"{path}: images of shape {X.shape[1:]}: no pixels")
    if not np.isfinite(X).all() or X.min() < 0 or X.max() > 1:
        raise ArtifactError(f"{path}: X must lie in [0, 1]")
    if y.min() < 0:
        raise ArtifactError(f"{path}: negative labels")
    return X, y
