"""Stage 1: load the configured dataset, verify it, split it, write the splits.

    python -m pipeline.prepare                      # data=mnist_sample, no download
    python -m pipeline.prepare data=mnist           # full MNIST: cache, else mirrors
    python -m pipeline.prepare data=idx data.path=DIR

Writes ``${paths.prepared}/{train,val,test}.npz`` (``X`` float32 (n, h, w) in [0, 1], ``y``
int64) and ``${paths.prepared}/meta.json``. Every file is written atomically, and
``meta.json`` is removed first and written last, so a directory with a ``meta.json`` is a
complete, consistent set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline.config import stage_main
from pipeline.errors import ConfigError
from pipeline.io import ArtifactError, save_arrays, write_json

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Prepare ``cfg.data`` into ``cfg.paths.prepared``; returns a short summary."""
    from pipeline.data.datasets import SPLITS, load_dataset  # scikit-learn: not for `--help`

    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    dataset = load_dataset(data_cfg, seed=cfg.seed, cache_dir=Path(cfg.paths.cache))
    out = Path(cfg.paths.prepared)
    (out / "meta.json").unlink(missing_ok=True)
    for split in SPLITS:
        X, y = dataset.splits[split]
        save_arrays(out / f"{split}.npz", X=X, y=y)
    meta = dataset.meta()
    write_json(out / "meta.json", meta)
    log.info("prepared %s from %s: %s -> %s", dataset.name, dataset.source, meta["counts"], out)
    return {
        "dataset": dataset.name,
        "counts": meta["counts"],
        "image_shape": meta["image_shape"],
        "output": str(out),
    }


def main() -> None:
    """Command-line entry point; bad input ends as ``error: ...`` and exit status 1."""
    stage_main(run, (ArtifactError, ConfigError, OSError))


if __name__ == "__main__":
    main()
