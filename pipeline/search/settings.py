"""The space the ``search`` section describes, and the epochs a trial may train."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.config import one_line, to_container
from pipeline.errors import ConfigError
from pipeline.search.space import (
    check_names,
    check_space,
    configured_values,
    estimator_overrides,
    including_configured,
)


def validate_settings(cfg: DictConfig) -> dict[str, dict]:
    """The space of a validated config (types and ranges are the schema's,
    :class:`pipeline.config.schema.SearchConfig`): its dimensions checked and named after
    the estimator's parameters, each configured value added (the baseline trial's)."""
    space = check_space(to_container(cfg.search)["space"])
    check_names(cfg, space)
    check_values(cfg, space)
    return including_configured(space, configured_values(cfg, space))


def check_values(cfg: DictConfig, space: dict[str, dict]) -> None:
    """Every choice and both ends of every range are values the estimator accepts (its
    parameter constraints): a space that reaches outside them would fail trial by trial."""
    from pipeline.factory import ESTIMATOR_CLASSES, estimator_params

    cls = ESTIMATOR_CLASSES[cfg.model.estimator]
    for name, spec in space.items():
        for value in spec["choices"] if "choices" in spec else (spec["low"], spec["high"]):
            estimator = cls(**estimator_params(cfg, estimator_overrides({name: value}, cfg)))
            try:
                estimator.check_params()
            except ValueError as err:  # sklearn's InvalidParameterError is one
                raise ConfigError(
                    f"search.space.{name}: {value!r} is not a value the estimator takes "
                    f"({one_line(err)})"
                ) from None


def epoch_budget(cfg: DictConfig, space: dict[str, dict]) -> int:
    """The most epochs a trial trains: ``search.epochs``, or the top of a searched range."""
    if "epochs" in space:
        spec = space["epochs"]
        return int(max(spec["choices"]) if "choices" in spec else spec["high"])
    return int(cfg.search.epochs)
