"""A stage's ``--help`` (pipeline.config.help): read from conf/, without composing."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

from pipeline.config import PACKAGE_CONF_DIR
from pipeline.config.help import group_options, stage_help
from tests.environ import child_environment

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_groups_list_their_options_with_the_default_in_brackets(tmp_path):
    write(
        tmp_path / "config.yaml",
        "defaults:\n  - model: cnn\n  - train: ${model}\n  - experiment: null\n"
        "  - _self_\n  - override hydra/job_logging: stdout\n",
    )
    for name in ("model/cnn", "model/mlp", "train/cnn", "experiment/x", "book/ch6/a"):
        write(tmp_path / f"{name}.yaml", "{}\n")
    (tmp_path / "empty").mkdir()

    assert group_options(tmp_path) == {
        "book/ch6": "a",
        "experiment": "x",
        "model": "[cnn], mlp",
        "train": "cnn, [${model}]",
    }


def test_a_broken_config_yaml_still_lists_the_groups(tmp_path):
    write(tmp_path / "config.yaml", "defaults: [\n")
    write(tmp_path / "model/cnn.yaml", "{}\n")
    assert group_options(tmp_path) == {"model": "cnn"}


def test_the_help_names_the_stage_its_docstring_and_hydras_flags():
    stage = types.ModuleType("pipeline.train", "Train stage: fit the network.")
    text = stage_help(stage, PACKAGE_CONF_DIR)
    assert text.startswith("usage: python -m pipeline.train ")
    assert "Train stage: fit the network." in text
    assert "  augment: " in text and "[shifts]" in text
    assert "--cfg job" in text and "--hydra-help" in text


def test_help_exits_0_and_hydras_own_flags_still_reach_hydra():
    def stage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.prepare", *args],
            cwd=ROOT,
            env=child_environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    helped = stage("model=mlp", "-h")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: python -m pipeline.prepare ")
    composed = stage("--cfg", "job", "model=mlp")
    assert composed.returncode == 0, composed.stderr
    assert "name: mlp" in composed.stdout


def test_help_read_in_part_ends_quietly():
    # `--help | head -1`: the reader is gone before the stage writes (here, from the start).
    read_end, write_end = os.pipe()
    os.close(read_end)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--help"],
        cwd=ROOT,
        env=child_environment(),
        stdout=write_end,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    os.close(write_end)
    assert done.returncode == 0 and done.stderr == b""
