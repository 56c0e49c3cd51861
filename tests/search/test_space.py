"""The searched shape dimensions: ``filters`` (CNNs) and ``hidden_units``."""

from __future__ import annotations

import pytest

from pipeline.config import compose_config
from pipeline.errors import ConfigError
from pipeline.search.space import (
    as_config,
    baseline_values,
    check_names,
    check_space,
    estimator_overrides,
    scaled_conv_layers,
)


def test_filters_scale_every_conv_layer_by_the_first_ones_factor():
    assert scaled_conv_layers([[20, 5, 2], [40, 5, 2]], 32) == [[32, 5, 2], [64, 5, 2]]
    assert scaled_conv_layers([[20, 5, 2], [40, 5, 2]], 10) == [[10, 5, 2], [20, 5, 2]]
    assert scaled_conv_layers([[20, 5, 2], [3, 3, 1]], 1) == [[1, 5, 2], [1, 3, 1]]


def test_searched_filters_go_to_the_model_group_and_the_baseline_is_the_config():
    cfg = compose_config(["model=cnn2", "seed=0"])
    space = check_space(
        {"filters": {"low": 8, "high": 32}, "learning_rate": {"low": 0.01, "high": 1.0}}
    )
    check_names(cfg, space)
    assert baseline_values(cfg, space)["filters"] == 20
    overrides = estimator_overrides({"filters": 30, "learning_rate": 0.2}, cfg)
    assert as_config(overrides) == {
        "train": {"learning_rate": 0.2},
        "model": {"conv_layers": [[30, 5, 2], [60, 5, 2]]},
    }


def test_filters_is_refused_for_a_network_without_convolutions():
    cfg = compose_config(["model=mlp", "seed=0"])
    refused = r"search\.space\.filters: not a parameter of MLPClassifier"
    with pytest.raises(ConfigError, match=refused):
        check_names(cfg, {"filters": {"low": 8, "high": 32, "log": False}})
