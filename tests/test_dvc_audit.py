"""dvc.yaml cannot drift from the code: every file a stage opens is declared.

Each stage runs in this process on tiny data (sklearn's digits, the MLP, one epoch) under an
audit hook (PEP 578) that records every file opened, created or renamed. A file read under
the project must lie in one of the stage's ``deps`` (or be a config it was given), a file
written in one of its ``outs``, with the paths of ``dvc.yaml`` interpolated from the same
config the stages ran with. The MLflow and Optuna stores live outside the graph (they are
shared databases, not stage outputs) and are kept in a directory the check leaves out.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from pipeline import augment, evaluate, prepare, search, train
from pipeline.config import compose_config
from tests.conftest import stage_overrides

ROOT = Path(__file__).resolve().parent.parent
STAGES = {
    "prepare": prepare,
    "augment": augment,
    "search": search,
    "train": train,
    "evaluate": evaluate,
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


ATOMIC_TEMP = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp$")  # pipeline.artifacts.atomic_path


def final_path(path: Path) -> Path:
    """An atomic write's temporary file stands for the file it becomes."""
    match = ATOMIC_TEMP.match(path.name)
    return path.with_name(match["name"]) if match else path


class FileAudit:
    """Records (path, written?) for every file opened while ``recording``."""

    def __init__(self) -> None:
        self.recording = False
        self.events: list[tuple[Path, bool]] = []
        sys.addaudithook(self)  # a hook stays for the process: it is idle when not recording

    def __call__(self, event: str, args: tuple) -> None:
        if not self.recording:
            return
        if event == "open" and isinstance(args[0], str | bytes | os.PathLike):
            path, mode, flags = args
            written = bool(mode and set(str(mode)) & set("wax+")) or bool(flags & WRITE_FLAGS)
            self.events.append((final_path(Path(os.fsdecode(path)).resolve()), written))
        elif event in ("os.rename", "os.replace"):
            self.events.append((final_path(Path(os.fsdecode(args[1])).resolve()), True))


AUDIT = FileAudit()


def interpolate(text: str, values: dict) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(OmegaConf.select(values, m.group(1))), text)


def declared(cfg) -> dict[str, dict[str, list[Path]]]:
    """Each stage's deps (params files included) and outs from dvc.yaml, interpolated with
    ``cfg``."""
    values = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    result = {}
    for name, stage in stages.items():
        stage = stage.get("do", stage)  # a foreach stage's template
        params_files = [next(iter(p)) for p in stage.get("params", []) if isinstance(p, dict)]
        entries = {"deps": stage.get("deps", []) + params_files, "outs": []}
        for kind in ("outs", "metrics", "plots"):
            entries["outs"] += [
                next(iter(e)) if isinstance(e, dict) else e for e in stage.get(kind, [])
            ]
        result[name] = {
            kind: [Path(interpolate(p, values)).resolve() for p in paths]
            for kind, paths in entries.items()
        }
    return result


def inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory):
    """Run every stage on digits and record what each one opened."""
    root = tmp_path_factory.mktemp("audit")
    stores = root / "stores"
    cfg = compose_config(
        stage_overrides(
            root,
            "data=digits",
            "augment=shifts",
            "model=mlp",
            "train.epochs=1",
            "search.n_trials=2",
            "search.workers=1",
            "search.epochs=1",
            f"search.storage=sqlite:///{stores / 'optuna.db'}",
            f"tracking.uri=sqlite:///{stores / 'mlflow.db'}",
        )
    )
    opened = {}
    for name, stage in STAGES.items():
        AUDIT.events.clear()
        AUDIT.recording = True
        try:
            stage.run(cfg)
        finally:
            AUDIT.recording = False
        opened[name] = [
            (p, w) for p, w in AUDIT.events if root in p.parents and stores not in p.parents
        ]
    return cfg, opened


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_file_a_stage_reads_is_a_declared_dependency(audited_run, stage):
    cfg, opened = audited_run
    graph = declared(cfg)[stage]
    read = sorted({p for p, written in opened[stage] if not written})
    undeclared = [p for p in read if not inside(p, graph["deps"] + graph["outs"])]
    assert read or stage == "prepare", f"{stage} read nothing: the audit hook saw no file"
    assert undeclared == [], f"{stage} reads files dvc.yaml does not declare: {undeclared}"


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_file_a_stage_writes_is_a_declared_output(audited_run, stage):
    cfg, opened = audited_run
    graph = declared(cfg)[stage]
    written = sorted({p for p, w in opened[stage] if w})
    undeclared = [p for p in written if not inside(p, graph["outs"])]
    assert written, f"{stage} wrote nothing: the audit hook saw no file"
    assert undeclared == [], f"{stage} writes files dvc.yaml does not declare: {undeclared}"


def test_training_without_the_search_is_its_own_path():
    searching = compose_config([])
    alone = compose_config(["train.use_search=false"])
    assert searching.dvc.searches == {"default": {}}
    assert alone.dvc.searches == {}  # dvc.yaml's search stage: foreach over nothing
    assert searching.dvc.train_params_file == searching.paths.best_params
    assert searching.dvc.train_params_key == "config"
    assert (alone.dvc.train_params_file, alone.dvc.train_params_key) == ("params.yaml", "train")
    train_params = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["params"]
    assert {"${dvc.train_params_file}": ["${dvc.train_params_key}"]} in train_params


def test_every_declared_source_dependency_exists():
    """The code and conf/ paths that dvc.yaml names (not the data it interpolates) exist."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    named = {
        dep
        for stage in stages.values()
        for dep in stage.get("do", stage).get("deps", [])
        if "${" not in dep
    }
    assert named and sorted(d for d in named if not (ROOT / d).exists()) == []
