"""The schema of every config group: Hydra structured configs (dataclasses).

One dataclass per group of ``conf/`` (data, augment, model, train, search, tracking,
evaluate, paths) and :class:`Config` for the whole composed config. Types and choices are
checked by OmegaConf when a composed config is merged onto :class:`Config` (a boolean given
``maybe`` or an unknown key fails there); what a type cannot say, ranges, is written beside
the field as ``metadata`` and checked by :mod:`pipeline.config.validation`, which also holds
the few rules that tie fields together.

Range metadata: ``ge``/``gt``/``le``/``lt`` bound a number (every element of a list of
numbers); ``nonempty`` asks for a non-empty list. Every float must be finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


def bounded(default: Any = None, **bounds: float | bool) -> Any:
    """A dataclass field with ``default`` and range ``bounds`` (ge, gt, le, lt, nonempty)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=bounds)
    return field(default=default, metadata=bounds)


# --- choices ------------------------------------------------------------------------------
class DatasetName(Enum):
    mnist_sample = "mnist_sample"
    digits = "digits"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    idx = "idx"


class Direction(Enum):
    down = "down"
    up = "up"
    right = "right"
    left = "left"


class FlipAxis(Enum):
    left_right = "left_right"
    up_down = "up_down"


class EstimatorName(Enum):
    MLPClassifier = "MLPClassifier"
    CNNClassifier = "CNNClassifier"


class ActivationName(Enum):
    sigmoid = "sigmoid"
    tanh = "tanh"
    relu = "relu"
    identity = "identity"


class OutputActivationName(Enum):
    auto = "auto"
    sigmoid = "sigmoid"
    softmax = "softmax"


class CostName(Enum):
    quadratic = "quadratic"
    cross_entropy = "cross_entropy"
    log_likelihood = "log_likelihood"


class InitName(Enum):
    large = "large"
    scaled = "scaled"
    he = "he"


class Schedule(Enum):
    constant = "constant"
    halving = "halving"


class DType(Enum):
    float32 = "float32"
    float64 = "float64"


class SamplerName(Enum):
    tpe = "tpe"
    random = "random"
    cmaes = "cmaes"
    gp = "gp"


class PrunerName(Enum):
    median = "median"
    successive_halving = "successive_halving"
    hyperband = "hyperband"
    none = "none"


class Metric(Enum):
    val_accuracy = "val_accuracy"


class OnError(Enum):
    warn = "warn"
    fail = "fail"


# --- data ---------------------------------------------------------------------------------
@dataclass
class DataSplit:
    """Fractions of a bundled pool (train + val + test = 1); for IDX datasets only ``val``:
    a count (>= 1) or a fraction (< 1) of the training files."""

    train: float | None = bounded(None, gt=0, lt=1)
    val: float | None = bounded(None, gt=0)
    test: float | None = bounded(None, gt=0, lt=1)


@dataclass
class DataFile:
    name: str = "???"
    md5: str | None = None
    sha256: str | None = None


@dataclass
class DataFiles:
    train_images: DataFile = field(default_factory=DataFile)
    train_labels: DataFile = field(default_factory=DataFile)
    test_images: DataFile = field(default_factory=DataFile)
    test_labels: DataFile = field(default_factory=DataFile)


@dataclass
class DataConfig:
    name: DatasetName = DatasetName.mnist_sample
    split: DataSplit = field(default_factory=DataSplit)
    path: str | None = None
    search_paths: list[str] = field(default_factory=list)
    mirrors: list[str] = field(default_factory=list)
    timeout: float = bounded(30.0, gt=0)
    files: DataFiles | None = None
    image_shape: list[int] | None = bounded(None, ge=1)
    n_classes: int = bounded(10, ge=2)
    class_names: list[str] | None = None


# --- augment ------------------------------------------------------------------------------
@dataclass
class ShiftsConfig:
    pixels: int = bounded(1, ge=1)
    directions: list[Direction] = bounded(
        [Direction.down, Direction.up, Direction.right, Direction.left], nonempty=True
    )


@dataclass
class RotationsConfig:
    copies: int = bounded(1, ge=1)
    max_angle: float = bounded(10.0, gt=0, le=180)
    order: int = bounded(1, ge=0, le=1)


@dataclass
class ElasticConfig:
    copies: int = bounded(1, ge=1)
    alpha: float = bounded(34.0, gt=0)
    sigma: float = bounded(4.0, gt=0)
    order: int = bounded(1, ge=0, le=1)


@dataclass
class AffineConfig:
    copies: int = bounded(1, ge=1)
    max_shift: float = bounded(2.0, ge=0)
    max_scale: float = bounded(0.1, ge=0, le=0.9)
    max_shear: float = bounded(10.0, ge=0, le=60)
    order: int = bounded(1, ge=0, le=1)


@dataclass
class FlipsConfig:
    """Mirror copies, one per axis: ``left_right`` (for clothing) and/or ``up_down``."""

    axes: list[FlipAxis] = bounded([FlipAxis.left_right], nonempty=True)


@dataclass
class TransformsConfig:
    shifts: ShiftsConfig | None = None
    rotations: RotationsConfig | None = None
    elastic: ElasticConfig | None = None
    affine: AffineConfig | None = None
    flips: FlipsConfig | None = None


@dataclass
class AugmentConfig:
    name: str = "none"
    shuffle: bool = False
    transforms: TransformsConfig = field(default_factory=TransformsConfig)


# --- model and training -------------------------------------------------------------------
@dataclass
class ModelConfig:
    """The network: its architecture only (training values live in the ``train`` group)."""

    name: str = "???"
    estimator: EstimatorName = MISSING
    hidden_layer_sizes: list[int] = bounded([100], ge=1)
    activation: ActivationName = ActivationName.sigmoid
    output_activation: OutputActivationName = OutputActivationName.auto
    cost: CostName = CostName.cross_entropy
    init: InitName = InitName.scaled
    # (filters, kernel size, pool size) per convolutional layer; CNNClassifier only.
    conv_layers: list[list[int]] | None = bounded(None, ge=1)
    # Predictions averaged over each image and its mirror; CNNClassifier only, and only for
    # classes that look the same mirrored (clothes, not digits).
    predict_flips: bool = False


@dataclass
class TrainConfig:
    learning_rate: float = bounded(0.1, gt=0)  # eta
    batch_size: int = bounded(10, ge=1)  # m
    epochs: int = bounded(30, ge=1)
    l2: float = bounded(0.0, ge=0)  # lambda
    l1: float = bounded(0.0, ge=0)
    momentum: float = bounded(0.0, ge=0, lt=1)
    dropout: float = bounded(0.0, ge=0, lt=1)
    learning_rate_schedule: Schedule = Schedule.constant
    schedule_patience: int = bounded(5, ge=1)
    schedule_min_fraction: float = bounded(1 / 128, gt=0, le=1)
    early_stopping: bool = True
    n_iter_no_change: int = bounded(5, ge=1)
    track_gradient_norms: bool = True
    dtype: DType = DType.float32
    threads: int = bounded(1, ge=1)
    use_search: bool = True


# --- search -------------------------------------------------------------------------------
@dataclass
class SamplerConfig:
    name: SamplerName = SamplerName.tpe
    n_startup_trials: int = bounded(4, ge=0)


@dataclass
class PrunerConfig:
    name: PrunerName = PrunerName.successive_halving
    min_resource: int = bounded(1, ge=1)  # epochs every trial gets (multi-fidelity pruners)
    reduction_factor: int = bounded(3, ge=2)
    n_startup_trials: int = bounded(3, ge=0)  # median only
    n_warmup_steps: int = bounded(1, ge=0)  # median only


@dataclass
class SearchConfig:
    n_trials: int = bounded(10, ge=1)
    timeout: float | None = bounded(None, gt=0)
    workers: int = bounded(2, ge=1, le=64)  # processes on this machine
    storage: str = "sqlite:///optuna.db"
    study_name: str | None = None
    metric: Metric = Metric.val_accuracy
    epochs: int = bounded(10, ge=1)
    max_train_samples: int | None = bounded(None, ge=1)
    threads: int = bounded(1, ge=1)
    # Dimensions ({low, high[, log]} or {choices}); their rules are the search's own
    # (pipeline.search checks them), since a schema cannot type a mapping of unions.
    space: dict[str, Any] = field(default_factory=dict)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    heartbeat_interval: int = bounded(10, ge=1)
    grace_period: int = bounded(30, ge=1)
    max_retry: int = bounded(2, ge=0)
    # The best trial replaces the baseline (the configured values) only when it beats it on
    # validation by more than this many standard errors (pipeline.search.outputs); 0: always.
    min_gain_se: float = bounded(1.0, ge=0)


# --- tracking, evaluate, paths ------------------------------------------------------------
@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None
    experiment: str = bounded("nndl-pipeline", nonempty=True)
    on_error: OnError = OnError.warn
    timeout: float = bounded(10.0, gt=0)
    log_model: bool = True


@dataclass
class EvaluateConfig:
    misclassified_grid: int = bounded(36, ge=1)


@dataclass
class PathsConfig:
    data: str = "data"
    prepared: str = "data/prepared"
    augmented: str = "data/augmented"
    cache: str = "data/cache"
    models: str = "models"
    model: str = "models/model"
    run: str = "models/mlflow_run.json"
    reports: str = "reports"
    history: str = "reports/history.csv"
    metrics: str = "reports/metrics.json"
    plots: str = "reports/plots"
    evaluation: str = "reports/evaluation.md"
    search: str = "reports/search"
    best_params: str = "reports/search/best_params.yaml"


@dataclass
class DvcConfig:
    """What ``dvc.yaml`` interpolates to shape the graph (derived in conf/config.yaml)."""

    searches: dict[str, Any] = field(default_factory=dict)
    train_params_file: str = "???"
    train_params_key: str = "???"


@dataclass
class Config:
    """The composed config of every stage."""

    seed: int = bounded(MISSING, ge=0)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    dvc: DvcConfig = field(default_factory=DvcConfig)
    dvc_choices: dict[str, Any] = field(default_factory=dict)  # what `dvc` is derived from
    conf_hash: str | None = None  # stamped into params.yaml by the params stage
    book: Any = None  # the book's experiments (pipeline.book) check their own section


GROUPS = {
    "data": DataConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "search": SearchConfig,
    "tracking": TrackingConfig,
    "evaluate": EvaluateConfig,
    "paths": PathsConfig,
}


def register() -> None:
    """Register the schemas in Hydra's ConfigStore (``schema`` and ``schema/<group>``), so a
    config of one's own can extend them in its defaults list."""
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    for group, node in GROUPS.items():
        store.store(group="schema", name=group, node=node)
