"""A read-only output directory and a full disk, made real with mounts (tests run as root,
so ``chmod`` would not stop a write): a read-only bind mount of the output directory, and
a small ``tmpfs`` filled to the last page. Where mounting is not permitted the tests skip.

The stage must stop with one clear line on stderr (``error: ...`` naming the output path
and the reason, no traceback) and leave the outputs of the previous run as they were.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import augment, prepare
from pipeline.config import compose_config
from tests.environ import child_environment

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ["data=digits", "augment=none", "model=mlp", "train.use_search=false", "tracking=off"]
PAGE = 4096


ENV = child_environment()


def overrides(root: Path) -> list[str]:
    return [
        f"paths.data={root / 'data'}",
        f"paths.models={root / 'models'}",
        f"paths.reports={root / 'reports'}",
        *DIGITS,
    ]


def stage(name: str, root: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", f"pipeline.{name}", *overrides(root), *extra]
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def describe(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} not permitted here: {result.stderr.strip()}")


def umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


@contextlib.contextmanager
def read_only(directory: Path):
    """``directory`` read-only for everyone, root included: a read-only bind mount."""
    mount("--bind", str(directory), str(directory))
    try:
        result = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(directory)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"read-only remount not permitted here: {result.stderr.strip()}")
        probe = directory / ".probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        yield
    finally:
        umount(directory)


@contextlib.contextmanager
def small_disk(directory: Path, size: str = "2m"):
    """A ``tmpfs`` of ``size`` mounted on ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory))
    try:
        yield
    finally:
        umount(directory)


def free_bytes(directory: Path) -> int:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


def fill(directory: Path, leave: int = 0) -> None:
    """Write a filler file until only ``leave`` bytes (whole pages) are free."""
    with open(directory / "filler", "wb") as out:
        while free_bytes(directory) > leave:
            chunk = min(free_bytes(directory) - leave, 1 << 20)
            try:
                out.write(b"\0" * chunk)
                out.flush()
            except OSError:
                break
    assert free_bytes(directory) == leave, (free_bytes(directory), leave)


def assert_clear_error(result: subprocess.CompletedProcess, path: Path, reason: str) -> None:
    assert result.returncode == 1, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, describe(result)
    assert str(path) in errors[0] and reason in errors[0], errors[0]


def leftover_temporaries(directory: Path) -> list[str]:
    return [str(p) for p in directory.rglob(".*.tmp")]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("disk_faults")
    cfg = compose_config(overrides(root))
    prepare.run(cfg)
    augment.run(cfg)
    return root


def with_data(data_root: Path, root: Path) -> Path:
    """A fresh output root sharing the prepared data (a symlink)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").symlink_to(data_root / "data")
    return root


# --- read-only output directory ----------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "directory", "target"),
    [
        pytest.param("prepare", "data/prepared", "data/prepared", id="prepare"),
        pytest.param("train", "models", "models/model.npz", id="train"),
        pytest.param("evaluate", "reports", "reports", id="evaluate"),
    ],
)  # fmt: skip
def test_read_only_output_directory(data_root, tmp_path, name, directory, target):
    root = tmp_path
    if name == "prepare":
        assert stage("prepare", root).returncode == 0
    else:
        with_data(data_root, root)
        assert stage("train", root, "train.epochs=2").returncode == 0
        if name == "evaluate":
            assert stage("evaluate", root).returncode == 0
    before = snapshot(root / directory)
    with read_only(root / directory):
        extra = ["seed=7"] if name == "prepare" else ["train.epochs=3", "train.learning_rate=0.1"]
        result = stage(name, root, *extra)
        assert_clear_error(result, root / target, "Read-only file system")
    assert snapshot(root / directory) == before, "earlier outputs changed"


# --- disk full -----------------------------------------------------------------------------
def test_disk_full_stops_train_with_a_clear_error(data_root, tmp_path):
    root = with_data(data_root, tmp_path)
    models = root / "models"
    with small_disk(models):
        first = stage("train", root, "train.epochs=2")
        assert first.returncode == 0, describe(first)
        before = snapshot(models)
        fill(models)
        before["filler"] = (models / "filler").read_bytes()
        result = stage("train", root, "train.epochs=3", "train.learning_rate=0.1")
        try:
            assert snapshot(models) == before, "earlier outputs changed"
            assert not leftover_temporaries(models)
            assert_clear_error(result, models / "model.npz", "No space left on device")
        finally:
            (models / "filler").unlink()


def test_disk_full_between_weights_and_description_keeps_the_old_model(data_root, tmp_path):
    """The old model: 1 epoch (a short model.json). The new one: the same shapes, 300
    epochs (a model.json of several pages, its curves). The disk holds exactly one more
    model.npz: the new weights fit, their description does not."""
    root = with_data(data_root, tmp_path)
    models = root / "models"
    with small_disk(models):
        first = stage("train", root, "train.epochs=1", "train.early_stopping=false")
        assert first.returncode == 0, describe(first)
        before = snapshot(models)
        npz_pages = -(-len(before["model.npz"]) // PAGE)
        fill(models, leave=npz_pages * PAGE)
        result = stage("train", root, "train.epochs=300", "train.early_stopping=false")
        (models / "filler").unlink()
        assert result.returncode != 0, describe(result)
        assert "No space left on device" in result.stderr, describe(result)
        after = snapshot(models)
        assert after["model.json"] == before["model.json"]  # the new description failed
        assert not leftover_temporaries(models)
        assert after["model.npz"] == before["model.npz"], (
            "model.npz was replaced although model.json could not be: the pair on disk is "
            "the new weights with the old description"
        )
