"""Every config key of every group: a wrong type, an out-of-range value and NaN each end as
one line naming the key, exit status 2, and no file written.

The table is generated from the schema itself (pipeline/config/schema.py), so a key added
there is tested here without another line.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import typing
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from pipeline.config import compose_raw, stage_main, to_container
from pipeline.config import schema as S
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# Keys derived by conf/config.yaml or stamped by a stage, and the search space (its own
# rules, tested in the search's tests): not user-set values with a type of their own.
NOT_IN_TABLE = {"dvc", "dvc_choices", "conf_hash", "book", "search.space"}
BASE = ["data=mnist", "augment=full", "model=cnn"]  # every optional section present


def leaf_fields(schema: type = S.Config, prefix: str = "") -> list[tuple[str, typing.Any, dict]]:
    """(dotted key, annotation, range metadata) of every leaf of ``schema``."""
    hints = typing.get_type_hints(schema)
    leaves = []
    for spec in dataclasses.fields(schema):
        key = f"{prefix}{spec.name}"
        if key in NOT_IN_TABLE:
            continue
        annotation = hints[spec.name]
        nested = [
            a for a in typing.get_args(annotation) or (annotation,) if dataclasses.is_dataclass(a)
        ]
        if nested:
            leaves += leaf_fields(nested[0], f"{key}.")
        else:
            leaves.append((key, annotation, dict(spec.metadata)))
    return leaves


def base_type(annotation: typing.Any) -> typing.Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) in (typing.Union, _union_type()) else annotation


def _union_type():
    import types

    return types.UnionType


def wrong_type(annotation: typing.Any) -> typing.Any:
    kind = base_type(annotation)
    origin = typing.get_origin(kind)
    if origin is list:
        return "not-a-list"
    if origin is dict:
        return [1, 2]
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return "bogus"
    return {bool: "maybe", int: "abc", float: "abc", str: {"a": 1}}[kind]


def out_of_range(annotation: typing.Any, bounds: dict) -> typing.Any | None:
    kind = base_type(annotation)
    whole = kind is int or typing.get_args(kind) == (int,) or typing.get_args(kind) == (list[int],)
    step = 1 if whole else 0.5
    if "ge" in bounds:
        value = bounds["ge"] - step
    elif "gt" in bounds:
        value = bounds["gt"]
    elif "le" in bounds:
        value = bounds["le"] + step
    elif "lt" in bounds:
        value = bounds["lt"]
    elif bounds.get("nonempty"):
        return []
    else:
        return None
    if typing.get_origin(kind) is list:
        inner = typing.get_args(kind)[0]
        return [[value] * 3] if typing.get_origin(inner) is list else [value]
    return value


def is_float(annotation: typing.Any) -> bool:
    return base_type(annotation) is float


def cases() -> list[tuple[str, typing.Any]]:
    rows = []
    for key, annotation, bounds in leaf_fields():
        rows.append((key, wrong_type(annotation)))
        bad = out_of_range(annotation, bounds)
        if bad is not None:
            rows.append((key, bad))
        if is_float(annotation):
            rows.append((key, math.nan))
    return rows


CASES = cases()


@pytest.fixture(scope="module")
def base_config() -> dict:
    return to_container(compose_raw(BASE))


def test_the_table_covers_every_group():
    groups = {key.split(".")[0] for key, _ in CASES}
    assert groups >= {*S.GROUPS, "seed"}
    assert len(CASES) >= 150


@pytest.mark.parametrize(("key", "value"), CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_bad_value_is_one_line_exit_2_and_nothing_written(
    key, value, base_config, tmp_path, monkeypatch, capsys
):
    cfg = OmegaConf.create(base_config)
    OmegaConf.update(cfg, key, value, force_add=True)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(to_container(cfg)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["stage", "--params", str(params)])

    def must_not_run(cfg):
        raise AssertionError("the stage ran on a bad config")

    with pytest.raises(SystemExit) as exit_info:
        stage_main(must_not_run, (ValueError,))
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1, message
    assert message.startswith(f"config error: {key}"), message
    assert "Traceback" not in message
    assert sorted(p.name for p in Path(tmp_path).rglob("*")) == ["params.yaml"]


def test_the_shipped_configs_are_valid():
    for overrides in (
        [],
        ["model=mlp"],
        ["model=ch1"],
        ["data=digits", "augment=none"],
        ["data=fashion_mnist", "augment=full"],
        ["tracking=off"],
        ["tracking=server"],
    ):
        assert compose_raw(overrides) is not None
        from pipeline.config import compose_config

        compose_config(overrides)


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
)
def test_every_experiment_composes_to_a_valid_config_of_its_groups(name):
    from pipeline.config import compose_config

    cfg = compose_config([f"experiment={name}"])
    document = yaml.safe_load((ROOT / "conf" / "experiment" / f"{name}.yaml").read_text())
    for entry in document["defaults"]:
        ((group, choice),) = entry.items()
        assert cfg[group.removeprefix("override /")].name == choice
    own = compose_config([f"model={cfg.model.name}"]).train  # the model's training values
    assert (cfg.train.learning_rate, cfg.train.l2) == (own.learning_rate, own.l2)
    assert "experiment" not in cfg  # a bundle of choices, not a config key


def test_each_model_brings_its_own_training_values():
    from pipeline.config import compose_config

    mlp, cnn = compose_config(["model=mlp"]), compose_config(["model=cnn"])
    assert (mlp.train.learning_rate, mlp.train.l2) == (0.5, 5.0)
    assert (cnn.train.learning_rate, cnn.train.l2) == (0.1, 0.1)
    assert compose_config(["model=mlp", "train.learning_rate=0.25"]).train.learning_rate == 0.25
    assert "learning_rate" not in to_container(compose_raw(["model=mlp"]).model)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=cnn", "model.conv_layers=null"], "model.conv_layers: CNNClassifier needs"),
        (["model=mlp", "+model.conv_layers=[[2,3,2]]"], "model.conv_layers: only CNNClassifier"),
        (["model=cnn", "model.conv_layers=[[20,5]]"], r"model.conv_layers\[0\]: expected"),
        (["model=mlp", "+model.predict_flips=true"], "model.predict_flips: only CNNClassifier"),
        (["data=digits", "data.split.val=0.5"], "data.split: fractions must add up to 1"),
        (["data=mnist", "data.split.val=2.5"], "data.split.val: a count must be a whole"),
        (
            ["augment=shifts", "augment.transforms.shifts.directions=[up,up]"],
            "augment.transforms.shifts.directions: directions repeat",
        ),
        (["+colour=red"], "colour: unknown key"),
        (["train.early_stopping=maybe"], "train.early_stopping: expected true or false"),
        (["search.storage=sqlite:///"], "search.storage: expected sqlite:///FILE"),
        (["search.storage=journal://"], "search.storage: expected journal://FILE"),
        (["search.storage='sqlite:///a.db?mode=ro'"], "search.storage: expected sqlite:///FILE"),
        (["search.study_name=a/b"], r"search.study_name: letters, digits"),
        (["search.study_name=../x"], r"search.study_name: letters, digits"),
        (["search.workers=1000"], "search.workers: must be <= 64"),
        (["tracking.experiment=' '"], "tracking.experiment: must not be empty"),
        (["tracking=server", "tracking.uri=null"], "tracking.uri: empty"),
    ],
)
def test_rules_across_fields(overrides, message):
    from pipeline.config import compose_config

    with pytest.raises(ConfigError, match=f"^{message}"):
        compose_config(overrides)
