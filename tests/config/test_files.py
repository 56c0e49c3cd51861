"""The files one stage writes and another reads (pipeline.config.files), checked on reading."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline.config import compose_config, with_search_result
from pipeline.config.files import RunFile, read_checked, read_history
from pipeline.errors import ConfigError
from pipeline.io import ArtifactError
from tests.conftest import stage_overrides

GOOD = "epoch,train_loss,val_loss,val_accuracy,learning_rate\n1,0.5,0.6,0.9,0.1\n2,0.4,,0.91,0.1\n"


def test_a_history_reads_as_numbers(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(GOOD)
    rows = read_history(path)
    assert rows[1] == {
        "epoch": 2.0, "train_loss": 0.4, "val_loss": None, "val_accuracy": 0.91,
        "learning_rate": 0.1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch,train_loss\n1,nan\n", "expected a header with epoch, train_loss, learning_rate"),
        ("epoch\n1\n", "expected a header with epoch, train_loss, learning_rate"),
        ("epoch,train_loss,learning_rate\n", "expected a header"),
        ("epoch,train_loss,learning_rate\n1,,0.1\n", r":2: train_loss: empty"),
        ("epoch,train_loss,learning_rate\n1,x,0.1\n", r":2: train_loss: not a number"),
        ("epoch,train_loss,learning_rate\n0,1,0.1\n", r":2: epoch: expected a number >= 1"),
        ("epoch,train_loss,learning_rate\n1,1\n", r":2: the row does not match the header"),
    ],
)
def test_a_bad_history_names_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "history.csv"
    path.write_text(text)
    with pytest.raises(ArtifactError, match=message) as info:
        read_history(path)
    assert str(info.value).startswith(str(path))


def test_a_history_that_is_not_text_is_refused(tmp_path):
    path = tmp_path / "history.csv"
    path.write_bytes(b"\xff\xfe\x00epoch")
    with pytest.raises(ArtifactError, match="not a CSV file"):
        read_history(path)


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"x": 1}, "search.x: unknown key"),
        ({"study": "s", "trial": "x"}, "search.trial: expected an integer"),
        ({"study": "s", "trial": -1, "value": 0.5}, "search.trial: must be >= 0"),
    ],
)
def test_a_bad_search_record_in_the_run_file_is_refused(tmp_path, search, message):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"run_id": None, "search": search}))
    with pytest.raises(ArtifactError, match=message):
        read_checked(path, RunFile)


BEST = {
    "study": "mlp-digits-1", "trial": 3, "value": 0.9, "epochs": 4,
    "baseline": {"trial": 0, "value": 0.8}, "model": "mlp", "dataset": "digits",
    "config": {"train": {"learning_rate": 0.2}},
}  # fmt: skip


def _train_with(tmp_path, document, *overrides):
    cfg = compose_config(
        stage_overrides(tmp_path, "data=digits", "model=mlp", "train.use_search=true", *overrides)
    )
    path = tmp_path / "best_params.yaml"
    path.write_text(yaml.safe_dump(document))
    cfg.paths.best_params = str(path)
    return with_search_result(cfg)


def test_the_best_values_are_merged_and_their_trial_recorded(tmp_path):
    merged, provenance = _train_with(tmp_path, BEST)
    assert merged.train.learning_rate == 0.2
    assert provenance["search"] == {
        "study": "mlp-digits-1", "trial": 3, "value": 0.9, "baseline_trial": 0,
        "baseline_value": 0.8, "best_trial": None, "best_value": None,
    }  # fmt: skip


def test_the_studys_best_is_recorded_beside_the_trial_train_uses(tmp_path):
    kept = {**BEST, "trial": 0, "value": 0.8, "best": {"trial": 3, "value": 0.81},
            "chosen": "the baseline (the configured values): ..."}  # fmt: skip
    _, provenance = _train_with(tmp_path, kept)
    search = provenance["search"]
    assert (search["trial"], search["best_trial"], search["best_value"]) == (0, 3, 0.81)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"value": float("nan")}, ArtifactError, "value: must be a finite number"),
        ({"trial": "x"}, ArtifactError, "trial: expected an integer"),
        ({"epochs": -1}, ArtifactError, "epochs: must be >= 0"),
        ({"baseline": {"trial": 0}}, ArtifactError, "baseline.value: missing"),
        ({"best": {"trial": -2, "value": 0.9}}, ArtifactError, "best.trial: must be >= 0"),
        ({"chosen": ["x"]}, ArtifactError, "chosen"),
        ({"config": {}}, ArtifactError, "`config` must be a mapping"),
        ({"config": {"data": {"name": "mnist"}}}, ArtifactError, "`config` must be a mapping"),
        ({"model": "cnn", "dataset": "mnist_sample"}, ArtifactError,
         "the best values for model=cnn on data=mnist_sample, but this train has model=mlp"),
        ({"config": {"train": {"learning_rate": -1}}}, ConfigError, "train.learning_rate"),
    ],
)  # fmt: skip
def test_best_values_that_do_not_belong_to_this_train_are_refused(tmp_path, change, error, message):
    with pytest.raises(error, match=message) as info:
        _train_with(tmp_path, {**BEST, **change})
    assert "best_params.yaml" in str(info.value)


def test_a_best_params_file_of_values_alone_is_taken(tmp_path):
    merged, provenance = _train_with(tmp_path, {"config": {"train": {"learning_rate": 0.3}}})
    assert merged.train.learning_rate == 0.3
    assert provenance["params_source"] == f"the values in {tmp_path / 'best_params.yaml'}"
