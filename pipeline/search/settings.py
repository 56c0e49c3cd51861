"""The ``search`` config section: its type checks (one place, until the config schemas
replace them) and the space it describes."""

from __future__ import annotations

from omegaconf import DictConfig

from pipeline.config import to_container
from pipeline.errors import ConfigError, check_keys, require_int
from pipeline.search.space import (
    check_names,
    check_space,
    configured_values,
    including_configured,
)

SEARCH_KEYS = {
    "n_trials", "timeout", "workers", "storage", "study_name", "metric", "epochs",
    "max_train_samples", "threads", "space", "sampler", "pruner", "heartbeat_interval",
    "grace_period", "max_retry",
}  # fmt: skip
SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("hyperband", "successive_halving", "median", "none")


def validate_settings(cfg: DictConfig) -> dict[str, dict]:
    """Check the whole ``search`` section before anything is created; returns the space
    (each configured value added to its dimension's choices: the baseline trial's)."""
    s = to_container(cfg.search)
    check_keys(s, SEARCH_KEYS, "search", required=SEARCH_KEYS)
    minimums = {"n_trials": 1, "workers": 1, "epochs": 1, "threads": 1,
                "heartbeat_interval": 1, "grace_period": 1, "max_retry": 0}  # fmt: skip
    for key, minimum in minimums.items():
        require_int(s[key], f"search.{key}", minimum)
    if s["max_train_samples"] is not None:
        require_int(s["max_train_samples"], "search.max_train_samples", 1)
    timeout = s["timeout"]
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 < timeout < float("inf")):  # fmt: skip
        raise ConfigError(f"search.timeout: expected seconds > 0 or null, got {timeout!r}")
    if s["sampler"].get("name") not in SAMPLERS:
        raise ConfigError(f"search.sampler.name: {s['sampler'].get('name')!r} is not one of "
                          f"{list(SAMPLERS)}")  # fmt: skip
    if s["pruner"].get("name") not in PRUNERS:
        raise ConfigError(f"search.pruner.name: {s['pruner'].get('name')!r} is not one of "
                          f"{list(PRUNERS)}")  # fmt: skip
    for key in ("min_resource", "reduction_factor", "n_startup_trials", "n_warmup_steps"):
        if key in s["pruner"]:
            require_int(s["pruner"][key], f"search.pruner.{key}", 2 if key == "reduction_factor"
                        else 1 if key == "min_resource" else 0)  # fmt: skip
    space = check_space(s["space"])
    check_names(cfg, space)
    return including_configured(space, configured_values(cfg, space))


def epoch_budget(cfg: DictConfig, space: dict[str, dict]) -> int:
    """The most epochs a trial trains: ``search.epochs``, or the top of a searched range."""
    if "epochs" in space:
        spec = space["epochs"]
        return int(max(spec["choices"]) if "choices" in spec else spec["high"])
    return int(cfg.search.epochs)
