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

from pipeline.errors import ConfigError, check_keys
from pipeline.io import ArtifactError


class DataError(ArtifactError):
    """An input file or data source is missing, malformed, or fails its checksum."""


__all__ = ["ConfigError", "DataError", "check_keys"]
