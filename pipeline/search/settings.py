"""The space the ``search`` section describes, and the epochs a trial may train."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.config import to_container
from pipeline.search.space import (
    check_names,
    check_space,
    configured_values,
    including_configured,
)


def validate_settings(cfg: DictConfig) -> dict[str, dict]:
    """The space of a validated config (types and ranges are the schema's,
    :class:`pipeline.config.schema.SearchConfig`): its dimensions checked and named after
    the estimator's parameters, each configured value added (the baseline trial's)."""
    space = check_space(to_container(cfg.search)["space"])
    check_names(cfg, space)
    return including_configured(space, configured_values(cfg, space))


def epoch_budget(cfg: DictConfig, space: dict[str, dict]) -> int:
    """The most epochs a trial trains: ``search.epochs``, or the top of a searched range."""
    if "epochs" in space:
        spec = space["epochs"]
        return int(max(spec["choices"]) if "choices" in spec else spec["high"])
    return int(cfg.search.epochs)
