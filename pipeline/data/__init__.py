"""Datasets for the pipeline: loading, verifying, splitting and augmenting images.

The modules, each usable alone:

- :mod:`pipeline.data.idx` reads and writes IDX files (the MNIST format), gzipped or raw.
- :mod:`pipeline.data.download` fetches files from mirrors, checks their checksums and keeps
  them in a cache directory.
- :mod:`pipeline.data.datasets` turns a ``data`` config into train / val / test splits.
- :mod:`pipeline.data.transforms` augments images: the book's one-pixel shifts, rotations,
  elastic distortions and random affine maps.

This package defines the two error types its modules raise; a stage catches them and turns
them into a one-line message and a non-zero exit status.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from pipeline.artifacts import ArtifactError
from pipeline.errors import ConfigError


class DataError(ArtifactError):
    """An input file or data source is missing, malformed, or fails its checksum."""


def check_keys(cfg: Any, allowed: Set[str], prefix: str, required: Set[str] = frozenset()) -> None:
    """Raise :class:`ConfigError` naming the first unknown or missing key of mapping ``cfg``."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{prefix}: expected a mapping, got {cfg!r}")
    for key in cfg:
        if key not in allowed:
            raise ConfigError(f"{prefix}.{key}: unknown key; expected one of {sorted(allowed)}")
    for key in sorted(required):
        if key not in cfg:
            raise ConfigError(f"{prefix}.{key}: missing")


__all__ = ["ConfigError", "DataError", "check_keys"]
