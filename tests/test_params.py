"""params.yaml follows conf/ (dvc repro) without undoing `dvc exp run -S` overrides."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pipeline import config, params
from pipeline.errors import ConfigError


@pytest.fixture
def conf_copy(tmp_path, monkeypatch):
    """A private copy of conf/ that the tests may edit."""
    conf = tmp_path / "conf"
    shutil.copytree(config.conf_dir(), conf)
    monkeypatch.setenv(config.CONF_DIR_VARIABLE, str(conf))
    return conf


def read(path):
    return yaml.safe_load(path.read_text())


def test_compose_then_keep(conf_copy, tmp_path):
    out = tmp_path / "params.yaml"
    assert params.update_params(out) == "composed"
    composed = read(out)
    assert composed["model"]["name"] == "cnn" and composed["conf_hash"] == config.conf_hash(
        conf_copy
    )
    assert composed["paths"]["prepared"] == "data/prepared"  # interpolations resolved
    assert params.update_params(out) == "kept"
    assert read(out) == composed


def test_edited_conf_is_recomposed(conf_copy, tmp_path):
    out = tmp_path / "params.yaml"
    params.update_params(out)
    train = conf_copy / "train" / "default.yaml"
    train.write_text(train.read_text().replace("momentum: 0.0", "momentum: 0.7"))
    assert params.update_params(out) == "composed"
    assert read(out)["train"]["momentum"] == 0.7


def test_values_from_dvc_exp_run_are_kept_and_stamped(conf_copy, tmp_path):
    """`dvc exp run -S` writes the composed config without our hash: it wins."""
    out = tmp_path / "params.yaml"
    params.update_params(out)
    experiment = read(out)
    del experiment["conf_hash"]
    experiment["train"]["learning_rate"] = 0.5
    out.write_text(yaml.safe_dump(experiment))
    assert params.update_params(out) == "kept"
    assert read(out)["train"]["learning_rate"] == 0.5
    assert read(out)["conf_hash"] == config.conf_hash(conf_copy)


def test_overrides_on_the_command_line(conf_copy, tmp_path):
    out = tmp_path / "params.yaml"
    params.update_params(out, ["model=mlp", "train.epochs=3"])
    assert read(out)["model"]["name"] == "mlp" and read(out)["train"]["epochs"] == 3


@pytest.mark.parametrize(
    "override",
    [
        "search.storage=postgresql://u:s3cr3t@db-host/optuna",
        "tracking.uri=http://u:s3cr3t@127.0.0.1:5000",
        "tracking.uri='http://127.0.0.1:5000/?token=s3cr3t'",
    ],
)
def test_a_password_never_reaches_the_committed_file(conf_copy, tmp_path, override):
    out = tmp_path / "params.yaml"
    with pytest.raises(ConfigError, match="holds a password, and .*params.yaml is committed"):
        params.update_params(out, [override])
    assert not out.exists()
    params.update_params(out)  # the same from `dvc exp run -S`, which writes the file first
    experiment = read(out)
    del experiment["conf_hash"]
    experiment["search"]["storage"] = "postgresql://u:s3cr3t@db-host/optuna"
    out.write_text(yaml.safe_dump(experiment))
    with pytest.raises(ConfigError, match="^search.storage: holds a password"):
        params.update_params(out)


def test_a_url_without_a_password_is_written(conf_copy, tmp_path):
    out = tmp_path / "params.yaml"
    params.update_params(out, ["search.storage=postgresql://optuna@db-host/optuna"])
    assert read(out)["search"]["storage"] == "postgresql://optuna@db-host/optuna"


def test_committed_params_yaml_matches_conf():
    """The params.yaml in the repository is the composed conf/ (regenerate it if not)."""
    committed = read(config.PACKAGE_CONF_DIR.parent / "params.yaml")
    assert committed["conf_hash"] == config.conf_hash(config.PACKAGE_CONF_DIR), (
        "params.yaml is stale: run `python -m pipeline.params`"
    )
    fresh = config.to_container(config.compose_config())  # tests run from the repository root
    assert {k: v for k, v in committed.items() if k != "conf_hash"} == fresh


def test_conf_dir_follows_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(config.CONF_DIR_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    assert config.conf_dir() == config.PACKAGE_CONF_DIR  # no ./conf here
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.yaml").write_text("seed: 7\n")
    assert config.conf_dir() == tmp_path / "conf"
    assert config.compose_raw()["seed"] == 7


def test_changed_paths_ask_for_a_second_repro(conf_copy, tmp_path):
    """dvc.yaml reads its paths from params.yaml before the params stage runs."""
    out = tmp_path / "params.yaml"
    params.update_params(out)
    config_yaml = conf_copy / "config.yaml"
    config_yaml.write_text(config_yaml.read_text().replace("models: models", "models: weights"))
    with pytest.raises(params.PathsChanged, match="run `dvc repro` again"):
        params.update_params(out)
    assert read(out)["paths"]["models"] == "weights"  # written: the next run goes through
    assert params.update_params(out) == "kept"


def test_a_graph_change_asks_for_a_second_repro(conf_copy, tmp_path):
    """train.use_search shapes dvc.yaml's graph (the `dvc` section), read before this stage."""
    out = tmp_path / "params.yaml"
    params.update_params(out)
    train_yaml = conf_copy / "train" / "default.yaml"
    train_yaml.write_text(train_yaml.read_text().replace("use_search: true", "use_search: false"))
    with pytest.raises(params.PathsChanged, match="`dvc` section changed"):
        params.update_params(out)
    assert read(out)["dvc"]["searches"] == {}
    assert params.update_params(out) == "kept"
