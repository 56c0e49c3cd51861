"""The files one stage writes and another reads, checked like the config before work starts.

``meta.json`` of prepare and augment, the search's ``best_params.yaml``, ``mlflow_run.json``
of train and ``history.csv`` each have a schema here (dataclasses, as the config groups
do); :func:`read_checked` reads one and raises :class:`ArtifactError` naming the file and
the key at fault: a syntax error, a list where a mapping belongs, a missing key and a wrong
type all end the same way.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import MISSING

from pipeline.config.validation import validate_schema
from pipeline.errors import ConfigError
from pipeline.io import ArtifactError, read_json


@dataclass
class SplitCounts:
    train: int = field(default=-1, metadata={"ge": 1})
    val: int = field(default=-1, metadata={"ge": 1})
    test: int = field(default=-1, metadata={"ge": 1})


@dataclass
class PreparedMeta:
    """``${paths.prepared}/meta.json``: what prepare wrote."""

    dataset: str = "???"
    source: str = "???"
    image_shape: list[int] = field(default_factory=list, metadata={"ge": 1, "nonempty": True})
    n_classes: int = field(default=-1, metadata={"ge": 2})
    classes: list[int] = field(default_factory=list, metadata={"nonempty": True})
    counts: SplitCounts = field(default_factory=SplitCounts)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    input_checksums: dict[str, str] = field(default_factory=dict)
    seed: int = field(default=-1, metadata={"ge": 0})
    split: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None


@dataclass
class AugmentedMeta:
    """``${paths.augmented}/meta.json``: what augment wrote."""

    n_original: int = field(default=-1, metadata={"ge": 1})
    n_total: int = field(default=-1, metadata={"ge": 1})
    counts: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, int] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = field(default=-1, metadata={"ge": 0})
    input: str = "???"
    input_sha256: str = "???"


@dataclass
class SearchRecord:
    """Where train's values came from when a search chose them (``RunFile.search``); None
    where ``best_params.yaml`` did not say (one written by hand)."""

    study: str | None = None
    trial: int | None = field(default=None, metadata={"ge": 0})
    value: float | None = None
    baseline_trial: int | None = field(default=None, metadata={"ge": 0})
    baseline_value: float | None = None
    best_trial: int | None = field(default=None, metadata={"ge": 0})
    best_value: float | None = None


@dataclass
class TrialScore:
    trial: int = field(default=-1, metadata={"ge": 0})
    value: float = MISSING


@dataclass
class BestParams:
    """``${paths.best_params}``: ``config``, the fragment of the ``train`` and ``model``
    groups that train merges onto its config, and what the search wrote about it: the trial
    those values are from and why (``chosen``), the study's best and the baseline's, and the
    model and dataset it ran on (all optional: a file written by hand may hold ``config``
    alone)."""

    config: dict[str, Any] | None = None
    study: str | None = None
    trial: int | None = field(default=None, metadata={"ge": 0})
    value: float | None = None
    epochs: int | None = field(default=None, metadata={"ge": 0})
    best: TrialScore | None = None  # the study's best (not chosen when within the noise)
    baseline: TrialScore | None = None
    chosen: str | None = None  # why train uses this trial (pipeline.search.outputs)
    model: str | None = None
    dataset: str | None = None


@dataclass
class RunFile:
    """``${paths.run}``: the MLflow run train started (ids are null when not tracked), and
    where its training values came from (``pipeline.config.with_search_result``)."""

    run_id: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    params_source: str | None = None  # None: written by a train that did not record it
    search: SearchRecord | None = None
    # What the model was trained as and on (None: a train that did not record them): the
    # model config's name and the sha256 of ${paths.prepared}/meta.json, which evaluate
    # compares with its own config and data.
    model: str | None = None
    prepared_meta_sha256: str | None = None


Schema = TypeVar("Schema")


def read_checked(path: str | Path, schema: type) -> dict[str, Any]:
    """The JSON file at ``path`` checked against ``schema``."""
    try:
        return validate_schema(schema, read_json(path), "")
    except ConfigError as err:
        raise ArtifactError(f"{path}: {err}") from None


# Columns every training history has, filled in every row (the reports plot them).
HISTORY_COLUMNS = ("epoch", "train_loss", "learning_rate")


def read_history(path: str | Path) -> list[dict[str, float | None]]:
    """The per-epoch CSV train wrote: a header with :data:`HISTORY_COLUMNS` among others and
    rows of numbers (an empty cell is None, except in those columns)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: training history not found; run the train stage first")
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (UnicodeDecodeError, csv.Error) as err:
        raise ArtifactError(f"{path}: not a CSV file ({err})") from None
    if not rows or not set(HISTORY_COLUMNS) <= set(rows[0]):
        raise ArtifactError(
            f"{path}: expected a header with {', '.join(HISTORY_COLUMNS)} and one row per epoch"
        )
    return [_numbers(path, line, row) for line, row in enumerate(rows, start=2)]


def _numbers(path: Path, line: int, row: dict[str | None, Any]) -> dict[str, float | None]:
    if None in row or None in row.values():
        raise ArtifactError(f"{path}:{line}: the row does not match the header")
    values: dict[str, float | None] = {}
    for key, text in row.items():
        try:
            values[str(key)] = float(text) if text != "" else None
        except ValueError:
            raise ArtifactError(f"{path}:{line}: {key}: not a number (got {text!r})") from None
    for key in HISTORY_COLUMNS:
        if values[key] is None:
            raise ArtifactError(f"{path}:{line}: {key}: empty")
    epoch = values["epoch"]
    if not math.isfinite(epoch) or epoch < 1:
        raise ArtifactError(f"{path}:{line}: epoch: expected a number >= 1 (got {epoch!r})")
    return values
