"""The search space: its cross-field checks, sampling, and the configured (book) values.

A dimension is ``{low, high[, log]}`` (ints when both bounds are ints, floats otherwise) or
``{choices: [...]}``. Names are estimator parameters (``learning_rate`` = eta, ``l2`` =
lambda, ``batch_size`` = m, ``dropout``, ``epochs``, ``activation``, ...) plus two of the
network's shape: ``hidden_units``, the size of every hidden layer, and ``filters`` (CNNs), the
first convolutional layer's number of feature maps, the later layers' scaled in proportion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from pipeline.config import to_container
from pipeline.config.schema import TrainConfig
from pipeline.errors import ConfigError

if TYPE_CHECKING:  # this module is light: config validation calls check_space
    import optuna

TRAIN_KEYS = {spec.name for spec in dataclasses.fields(TrainConfig)}

BOUND_KEYS = {"low", "high", "log"}
CHOICE_KEYS = {"choices"}


def check_space(space: Any, prefix: str = "search.space") -> dict[str, dict]:
    """The space's cross-field rules, for config validation: a non-empty mapping; each
    dimension either ``choices`` (a non-empty list) or ``low``/``high`` (numbers, low <= high;
    on a log scale low > 0); no other keys. Returns the normalised space (``log`` filled
    in). Errors name the key: ``search.space.l2: low=20 is greater than high=10``."""
    if not isinstance(space, Mapping):
        raise ConfigError(f"{prefix}: expected a mapping of dimensions, got {space!r}")
    if not space:
        raise ConfigError(f"{prefix}: empty; give at least one dimension")
    return {name: _check_dimension(spec, f"{prefix}.{name}") for name, spec in space.items()}


def _check_dimension(spec: Any, key: str) -> dict:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}: expected {{low, high[, log]}} or {{choices}}; got {spec!r}")
    unknown = set(spec) - (CHOICE_KEYS if "choices" in spec else BOUND_KEYS)
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}: unknown key")
    if "choices" in spec:
        if not isinstance(spec["choices"], list) or not spec["choices"]:
            raise ConfigError(f"{key}.choices: must be a non-empty list")
        return {"choices": list(spec["choices"])}
    for bound in ("low", "high"):
        if not isinstance(spec.get(bound), int | float) or isinstance(spec[bound], bool):
            raise ConfigError(f"{key}.{bound}: must be a number; got {spec.get(bound)!r}")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if low > high:
        raise ConfigError(f"{key}: low={low} is greater than high={high}")
    if log and low <= 0:
        raise ConfigError(f"{key}.low: must be > 0 on a log scale; got {low}")
    return {"low": low, "high": high, "log": log}


def check_names(cfg: DictConfig, space: Mapping) -> None:
    """Every dimension names a parameter of the configured estimator, or one of the shape
    dimensions it has (``hidden_units``; ``filters`` for a CNN)."""
    from pipeline.factory import estimator_params

    params = estimator_params(cfg)
    known = set(params) | {"hidden_units"} | ({"filters"} if "conv_layers" in params else set())
    for name in space:
        if name not in known:
            raise ConfigError(
                f"search.space.{name}: not a parameter of {cfg.model.estimator}; expected one "
                f"of {sorted(known - {'random_state'})}"
            )


def suggest(trial: optuna.Trial, space: Mapping[str, dict]) -> dict[str, Any]:
    """Sample every dimension: ints where both bounds are ints, floats otherwise."""
    values = {}
    for name, spec in space.items():
        if "choices" in spec:
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec["log"])
        else:
            values[name] = trial.suggest_float(
                name, float(spec["low"]), float(spec["high"]), log=spec["log"]
            )
    return values


def configured_values(cfg: DictConfig, space: Mapping[str, dict]) -> dict[str, Any]:
    """The composed config's own value of every searched dimension: the model's (the
    book's) eta, lambda, batch size, ... -- the study's baseline, trial 0."""
    from pipeline.factory import estimator_params

    params = estimator_params(cfg)
    values = {}
    for name in space:
        if name == "hidden_units":
            values[name] = int(to_container(cfg.model)["hidden_layer_sizes"][0])
        elif name == "filters":
            values[name] = int(to_container(cfg.model)["conv_layers"][0][0])
        else:
            values[name] = params[name]
    return values


def including_configured(space: Mapping[str, dict], baseline: Mapping[str, Any]):
    """The space widened to hold each configured value (added to ``choices``, or a range
    stretched to it): the baseline trial is a point of the study's space, so Optuna can
    also queue it again when its worker dies. A value a log range cannot hold (<= 0) is
    left out of the baseline instead (see :func:`baseline_values`)."""
    widened = {}
    for name, spec in space.items():
        value = baseline.get(name)
        if "choices" in spec:
            if value not in spec["choices"]:
                spec = {"choices": [*spec["choices"], value]}
        elif _fits_range(spec, value):
            kind = int if isinstance(spec["low"], int) and isinstance(spec["high"], int) else float
            low, high = kind(min(spec["low"], value)), kind(max(spec["high"], value))
            spec = {**spec, "low": low, "high": high}
        widened[name] = spec
    return widened


def _fits_range(spec: dict, value: Any) -> bool:
    """Can this range be stretched to ``value`` (a number of its kind, > 0 on a log scale)?"""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    ints = isinstance(spec["low"], int) and isinstance(spec["high"], int)
    return (not ints or isinstance(value, int)) and (value > 0 or not spec["log"])


def baseline_values(cfg: DictConfig, space: Mapping[str, dict]) -> dict[str, Any]:
    """The baseline trial's parameters: the configured values the space holds."""
    values = configured_values(cfg, space)
    return {
        name: value
        for name, value in values.items()
        if ("choices" in space[name] and value in space[name]["choices"])
        or (
            "choices" not in space[name]
            and _fits_range(space[name], value)
            and space[name]["low"] <= value <= space[name]["high"]
        )
    }


def estimator_overrides(values: Mapping[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """Searched values as estimator parameters: ``hidden_units`` sizes every hidden layer;
    ``filters`` sets the first conv layer's feature maps and scales the later layers' by the
    same factor (20@5x5, 40@5x5 searched at filters=32 becomes 32@5x5, 64@5x5)."""
    overrides = dict(values)
    if "hidden_units" in overrides:
        units = int(overrides.pop("hidden_units"))
        overrides["hidden_layer_sizes"] = [units] * len(cfg.model.hidden_layer_sizes)
    if "filters" in overrides:
        overrides["conv_layers"] = scaled_conv_layers(
            to_container(cfg.model)["conv_layers"], int(overrides.pop("filters"))
        )
    return overrides


def scaled_conv_layers(conv_layers: list, filters: int) -> list[list[int]]:
    """``conv_layers`` ([filters, kernel, pool] per layer) with ``filters`` feature maps in
    the first layer and every later layer's count scaled by the same factor (at least 1)."""
    factor = filters / conv_layers[0][0]
    return [[max(1, round(maps * factor)), kernel, pool] for maps, kernel, pool in conv_layers]


def as_config(overrides: Mapping[str, Any]) -> dict[str, dict]:
    """Estimator parameters as a config fragment: training values under ``train``, the
    network's shape under ``model`` (what train merges onto the composed config)."""
    fragment: dict[str, dict] = {"train": {}}
    for name, value in overrides.items():
        group = "train" if name in TRAIN_KEYS else "model"
        fragment.setdefault(group, {})[name] = value
    return fragment
