"""Error types shared across the package, raised for input a user can fix."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value makes no sense; the message names the key."""
