"""Helpers for tests that run the real `dvc` CLI on a copy of this project in tmp."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.environ import child_environment

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# What a DVC project of this pipeline needs (pipeline/: dvc.yaml lists its files as deps).
COPIED = (
    "conf",
    "pipeline",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    ".gitignore",
)


def environment() -> dict[str, str]:
    env = child_environment()
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONSAFEPATH="1",  # `python -m pipeline.x` imports the installed package
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    return env


ENV = environment()


def describe(result: subprocess.CompletedProcess) -> str:
    return (
        f"$ {' '.join(map(str, result.args))}\nexit status {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def sh(cwd: Path, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )
    if check:
        assert result.returncode == 0, describe(result)
    return result


def dvc(repo: Path, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    return sh(repo, BIN / "dvc", *args, check=check)


def edit(path: Path, pattern: str, replacement: str) -> None:
    """Replace the one line of ``path`` that matches ``pattern`` (a regex, multiline)."""
    text, count = re.subn(pattern, replacement, path.read_text(), flags=re.M)
    assert count == 1, f"{path}: {pattern!r} matched {count} times"
    path.write_text(text)


def stages_run(result: subprocess.CompletedProcess) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", result.stdout + result.stderr)


def copy_project(repo: Path) -> None:
    """The working tree's versions of the project files (new ones included: what the next
    commit would hold) into ``repo``."""
    listed = sh(ROOT, "git", "ls-files", "-co", "--exclude-standard", "--", *COPIED)
    for name in sorted(set(listed.stdout.split())):
        if not (ROOT / name).is_file():  # deleted in the working tree
            continue
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)


def fast_project(
    repo: Path, stores: Path, epochs: int, more: dict[str, dict[str, str]] | None = None
) -> None:
    """The project in ``repo`` as one git commit, its ``conf/`` edited for runs of seconds:
    digits, no augmentation, the MLP for ``epochs`` epochs with lambda 0.1, a two-trial
    search that train does not use (``train.use_search=false``, the documented way to skip
    it), MLflow and Optuna in SQLite files under ``stores``. ``more``: further top-level
    keys per conf file, e.g. ``{"train/default.yaml": {"early_stopping": "false"}}``."""
    copy_project(repo)
    conf = repo / "conf"
    for group, option in [("data", "digits"), ("augment", "none"), ("model", "mlp")]:
        edit(conf / "config.yaml", rf"^  - {group}: .*$", f"  - {group}: {option}")
    for name in ("train/default.yaml", "train/mlp.yaml", "train/ch1.yaml"):
        edit(conf / name, r"^(\s*)epochs: .*$", rf"\g<1>epochs: {epochs}")
    edit(conf / "train/mlp.yaml", r"^(\s*)l2: .*$", r"\g<1>l2: 0.1")  # lambda for 1,257 images
    settings = {
        "train/default.yaml": {"use_search": "false"},
        "tracking/default.yaml": {"uri": f"sqlite:///{stores / 'mlflow.db'}"},
        "search/default.yaml": {
            "n_trials": "2",
            "workers": "1",
            "epochs": "1",
            "max_train_samples": "500",
            "storage": f"sqlite:///{stores / 'optuna.db'}",
        },
    }
    for name, values in (more or {}).items():
        settings.setdefault(name, {}).update(values)
    for name, values in settings.items():
        for key, value in values.items():
            edit(conf / name, rf"^{key}: .*$", f"{key}: {value}")
    # As after any conf/ edit that shapes the graph: the first run rewrites params.yaml and
    # asks for another (the graph changed), the second keeps it.
    sh(repo, "python", "-m", "pipeline.params", check=False)
    sh(repo, "python", "-m", "pipeline.params")
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "pipeline with fast settings")
