"""Where the Hydra configuration lives and how stages and tests compose it."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The composed config for these overrides, as a stage's ``main`` would see it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=list(overrides))
