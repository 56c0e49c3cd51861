"""``dvc repro`` interrupted during train (SIGINT, as Ctrl-C sends it, and SIGKILL), then run
again: it must finish, in the same state as a run that was never interrupted.

A temporary git + DVC repository holds the pipeline with fast settings (digits, no
augmentation, the MLP for a few seconds of training, no search: ``train.use_search=false``
takes the search stage out of the graph; MLflow in a SQLite file of the temporary
directory). The stages up to augment run once; the repository is then copied three times:
one copy runs ``dvc repro`` straight through (the reference), the others are interrupted
while the train stage runs, at a moment drawn from a seeded RNG (at a random epoch of the
training, or while the model is saved and logged to MLflow), and reproduced again.

After the interruption no half-written file may look valid: every ``.npz`` present loads,
and DVC does not call the pipeline up to date. After the second ``dvc repro``: the same
``dvc.lock`` hashes as the reference for every deterministic output (the model's weights
bit for bit, its description, the history, metrics, reports and plots), ``dvc status``
clean, no temporary ``.*.tmp`` file left anywhere in the outputs.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.artifacts import load_model
from tests.dvc_project import BIN, ENV, describe, dvc, fast_project, stages_run

pytestmark = pytest.mark.slow

EPOCHS = 100  # a few seconds of training (early stopping off), to interrupt
NONDETERMINISTIC = {"models/mlflow_run.json"}  # the MLflow run id


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The repository with every stage before train already run (params ... augment)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tmp = tmp_path_factory.mktemp("dvc_faults")
    repo = tmp / "template"
    fast_project(repo, tmp, EPOCHS, {"train/default.yaml": {"early_stopping": "false"}})
    dvc(repo, "repro", "augment")
    return repo


def copy_of(template: Path, name: str) -> Path:
    repo = template.parent / name
    shutil.copytree(template, repo, symlinks=True)
    return repo


def lock_hashes(repo: Path) -> dict[str, str]:
    """Output path -> md5 from dvc.lock, for every stage."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
    }


def outputs(repo: Path) -> list[Path]:
    return [repo / d for d in ("data", "models", "reports") if (repo / d).exists()]


def leftover_temporaries(repo: Path) -> list[str]:
    return [str(p) for d in outputs(repo) for p in d.rglob(".*.tmp")]


def check_no_half_written_file_is_valid(repo: Path) -> None:
    for directory in outputs(repo):
        for path in directory.rglob("*.npz"):
            with np.load(path, allow_pickle=False) as npz:  # a truncated file raises
                for key in npz.files:
                    npz[key]
    if (repo / "models" / "model.json").is_file() and (repo / "models" / "model.npz").is_file():
        load_model(repo / "models" / "model")


@pytest.fixture(scope="module")
def reference(template) -> dict[str, str]:
    repo = copy_of(template, "reference")
    result = dvc(repo, "repro")
    assert stages_run(result) == ["train", "evaluate"], describe(result)
    return lock_hashes(repo)


def session_processes(sid: int) -> dict[int, str]:
    """pid -> command line of the processes of session ``sid``."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(stat.parent.name)] = cmdline.decode(errors="replace")
    return found


def epochs_done(log: Path) -> int:
    """The last epoch the train stage's progress bar (tqdm, in the log) reports."""
    found = re.findall(rf"(\d+)/{EPOCHS} \[", log.read_text(errors="replace"))
    return max(map(int, found), default=0)


def default_sigint() -> None:
    """In the child before exec: SIGINT as a terminal sends it. A shell that starts a job in
    the background (``cmd &``) sets SIGINT to ignored, which children inherit, and Python
    then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def signal_in_fit(process: subprocess.Popen, repo: Path, log: Path, sig: int) -> None:
    """Send ``sig`` to the process group while train is still fitting. The group is frozen
    (SIGSTOP) while the model file is checked absent, so a fast training cannot end between
    the check and the signal; the signal is delivered when the group continues."""
    os.killpg(process.pid, signal.SIGSTOP)
    fitting = not (repo / "models" / "model.npz").exists()
    os.killpg(process.pid, sig)
    with contextlib.suppress(ProcessLookupError):  # SIGKILL: nothing left to continue
        os.killpg(process.pid, signal.SIGCONT)
    assert fitting, f"the training had ended before the signal\n{log.read_text()[-3000:]}"


def interrupt_train(repo: Path, sig: int, moment: str, seed: int) -> tuple[subprocess.Popen, str]:
    """Start `dvc repro`; interrupt the train stage with ``sig``, sent to the whole process
    group as Ctrl-C sends SIGINT: ``fit`` at a random epoch, ``save`` a random time after
    the last epoch (saving the model, logging it to MLflow)."""
    rng = random.Random(seed)
    log = repo.parent / f"{repo.name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "dvc"), "repro"], cwd=repo, env=ENV, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=default_sigint,
        )  # fmt: skip
    # The bar reaches a log file in a few updates (tqdm thins them out), so "fit" waits for
    # the first epoch and then a random part of the training's first second.
    target = 1 if moment == "fit" else EPOCHS
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if epochs_done(log) >= target:
            break
        time.sleep(0.01)
    assert process.poll() is None, f"dvc repro ended first\n{log.read_text()[-3000:]}"
    pause = rng.uniform(0.0, 0.5 if moment == "fit" else 1.0)
    time.sleep(pause)
    where = f"{pause:.2f} s after epoch {target}"
    assert process.poll() is None, "dvc repro ended before the interruption"
    if moment == "fit":
        signal_in_fit(process, repo, log, sig)
    else:
        os.killpg(process.pid, sig)
    process.wait(timeout=120)
    deadline = time.monotonic() + 30
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return process, where


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("sig", "moment", "seed"),
    [(signal.SIGINT, "fit", 1), (signal.SIGKILL, "fit", 2), (signal.SIGKILL, "save", 3)],
    ids=["SIGINT-fit", "SIGKILL-fit", "SIGKILL-save"],
)
def test_interrupted_repro_recovers_to_the_uninterrupted_state(
    template, reference, sig, moment, seed
):
    repo = copy_of(template, f"interrupted-{sig.name}-{moment}")
    process, where = interrupt_train(repo, sig, moment, seed)
    log = (repo.parent / f"{repo.name}.log").read_text(errors="replace")
    assert process.returncode != 0, log
    assert not session_processes(process.pid), "processes of the interrupted repro survived"

    # Nothing half-written may pass for valid, and DVC must not call the pipeline up to date.
    check_no_half_written_file_is_valid(repo)
    status = dvc(repo, "status")
    assert "up to date" not in status.stdout, describe(status)
    if sig == signal.SIGINT:
        assert not leftover_temporaries(repo), leftover_temporaries(repo)

    again = dvc(repo, "repro")
    assert stages_run(again) == ["train", "evaluate"], describe(again)
    status = dvc(repo, "status")
    assert "Data and pipelines are up to date" in status.stdout, describe(status)
    assert not leftover_temporaries(repo), leftover_temporaries(repo)
    check_no_half_written_file_is_valid(repo)

    hashes = lock_hashes(repo)
    assert set(hashes) == set(reference)
    differ = {
        path: (reference[path], hashes[path])
        for path in reference
        if path not in NONDETERMINISTIC and hashes[path] != reference[path]
    }
    assert not differ, f"{sig.name} {where}: {differ}"
    print(f"\n{sig.name} {where}: recovered, {len(hashes)} outputs identical")


@pytest.mark.timeout(300)
def test_train_interrupted_by_ctrl_c_is_not_recorded_as_finished(template):
    from mlflow.tracking import MlflowClient

    repo = copy_of(template, "ctrl-c")
    log = repo.parent / "ctrl-c.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.train", "--params", "params.yaml"], cwd=repo,
            env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=default_sigint,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while epochs_done(log) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    signal_in_fit(process, repo, log, signal.SIGINT)
    assert process.wait(timeout=60) != 0, log.read_text()
    assert not (repo / "models" / "model.npz").exists()

    params = yaml.safe_load((repo / "params.yaml").read_text())
    client = MlflowClient(tracking_uri=params["tracking"]["uri"])
    experiment = client.get_experiment_by_name("nndl-pipeline")
    runs = client.search_runs(
        [experiment.experiment_id], "tags.dvc_stage = 'train'", order_by=["start_time DESC"]
    )
    interrupted = runs[0]
    epochs = len(client.get_metric_history(interrupted.info.run_id, "val_accuracy"))
    assert epochs < EPOCHS, "picked the wrong run"
    assert interrupted.info.status in ("KILLED", "FAILED"), (interrupted.info.status, epochs)
