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
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline.config import stage_main
from pipeline.data.splits import load_images
from pipeline.errors import ConfigError
from pipeline.io import ArtifactError, file_checksum, save_arrays, write_json

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Augment ``${paths.prepared}/train.npz`` into ``cfg.paths.augmented``; a short summary."""
    from pipeline.data.transforms import augment  # scipy: not for `--help`

    aug_cfg = OmegaConf.to_container(cfg.augment, resolve=True)
    source = Path(cfg.paths.prepared) / "train.npz"
    X, y = load_images(source)
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


def main() -> None:
    """Command-line entry point; bad input ends as ``error: ...`` and exit status 1."""
    stage_main(run, (ArtifactError, ConfigError, OSError))


if __name__ == "__main__":
    main()
