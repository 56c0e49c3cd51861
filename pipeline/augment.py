"""Stage 2: expand the prepared training split as ``cfg.augment`` says.

    python -m pipeline.augment                     # augment=shifts: the book's x5 expansion
    python -m pipeline.augment augment=full        # shifts, rotations, elastic, affine
    python -m pipeline.augment augment=none        # pass the training set through

Reads ``${paths.prepared}/train.npz``; writes ``${paths.augmented}/train.npz`` (same arrays,
originals included) and ``${paths.augmented}/meta.json`` (counts per kind, the config).
Validation and test splits are never augmented. ``meta.json`` is removed first and written
last, as in prepare.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline.artifacts import ArtifactError, load_arrays, save_arrays, write_json
from pipeline.config import CONF_DIR
from pipeline.data import ConfigError
from pipeline.data.download import file_checksum
from pipeline.data.transforms import augment, validate_config

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Augment ``${paths.prepared}/train.npz`` into ``cfg.paths.augmented``; a short summary."""
    aug_cfg = OmegaConf.to_container(cfg.augment, resolve=True)
    validate_config(aug_cfg)  # before reading anything: a bad config fails fast
    source = Path(cfg.paths.prepared) / "train.npz"
    X, y = load_training_set(source)
    X_aug, y_aug, counts = augment(X, y, aug_cfg, seed=cfg.seed, progress=True)
    out = Path(cfg.paths.augmented)
    (out / "meta.json").unlink(missing_ok=True)
    save_arrays(out / "train.npz", X=X_aug, y=y_aug)
    meta = {
        "n_original": len(y),
        "n_total": len(y_aug),
        "counts": counts,
        "class_counts": {
            str(c): int(n) for c, n in zip(*np.unique(y_aug, return_counts=True), strict=True)
        },
        "config": aug_cfg,
        "seed": cfg.seed,
        "input": str(source),
        "input_sha256": file_checksum(source),
    }
    write_json(out / "meta.json", meta)
    log.info("augmented %d -> %d training images (%s) -> %s", len(y), len(y_aug), counts, out)
    return {"n_original": len(y), "n_total": len(y_aug), "counts": counts, "output": str(out)}


def load_training_set(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` float32 (n, h, w) in [0, 1] and ``y`` int64 of a prepared split, checked."""
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found; run `python -m pipeline.prepare` first")
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


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    """Command-line entry point; bad input ends as ``error: ...`` and exit status 1."""
    try:
        run(cfg)
    except (ArtifactError, ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
