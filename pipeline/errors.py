"""Error types shared across the package, raised for input a user can fix, and the
config key check that raises them."""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any


class ConfigError(ValueError):
    """A configuration value makes no sense; the message names the key."""


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


def require_int(value: Any, key: str, minimum: int = 0) -> int:
    """``value`` if it is an integer >= ``minimum`` (not a bool), else a ConfigError naming key."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value
