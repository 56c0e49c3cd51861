"""How a stage ends on errors (pipeline.config.stage_main's checked run)."""

from __future__ import annotations

import pytest

from pipeline.config import _run_checked, compose_raw
from pipeline.io import ArtifactError


def _fails_with(error: BaseException):
    def run(cfg):
        raise error

    return run


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (MemoryError("Unable to allocate 58.2 TiB for an array"), "error: out of memory: Unable"),
        (ArtifactError("x.npz: not a valid .npz file"), "error: x.npz: not a valid .npz file"),
    ],
)
def test_a_failing_stage_ends_in_one_line_and_exit_1(error, line, capsys):
    with pytest.raises(SystemExit) as done:
        _run_checked(_fails_with(error), compose_raw([]), (ArtifactError,))
    assert done.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(line)


def test_a_password_of_the_config_is_masked_in_the_error_line(capsys):
    cfg = compose_raw(["search.storage=postgresql://u:s3cr3t PW@db/optuna"])
    error = ArtifactError("cannot reach db as u with s3cr3t PW")
    with pytest.raises(SystemExit):
        _run_checked(_fails_with(error), cfg, (ArtifactError,))
    assert capsys.readouterr().err == "error: cannot reach db as u with ***\n"
