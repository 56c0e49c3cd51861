"""A stage that succeeded ends without the interpreter's teardown; nothing else does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pipeline.config import quick_exit, stage_main


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(quick_exit, "_state", {"registered": False, "succeeded": False})
    ended = []
    monkeypatch.setattr(quick_exit.os, "_exit", ended.append)
    monkeypatch.setattr(quick_exit.sys, "gettrace", lambda: None)
    monkeypatch.delitem(sys.modules, "coverage", raising=False)
    return ended


def test_only_a_stage_that_succeeded_skips_the_teardown(fresh_state):
    quick_exit._end_if_succeeded()
    assert fresh_state == []
    quick_exit.succeeded()
    quick_exit._end_if_succeeded()
    assert fresh_state == [0]


def test_a_tracer_keeps_the_usual_exit(fresh_state, monkeypatch):
    monkeypatch.setattr(quick_exit.sys, "gettrace", lambda: print)
    quick_exit.succeeded()
    quick_exit._end_if_succeeded()
    assert fresh_state == []


def test_a_caller_of_stage_main_keeps_its_own_exit(fresh_state, monkeypatch, tmp_path):
    """stage_main called from another program (a test, a notebook) installs nothing: the
    program's own exit status must stand."""
    monkeypatch.setattr(sys, "argv", ["stage", "train.epochs=2"])
    seen = []
    stage_main(seen.append, (ValueError,))
    assert len(seen) == 1 and not quick_exit._state["registered"]


@pytest.mark.parametrize(("body", "status"), [("pass", 0), ("raise ValueError('bad input')", 1)])
def test_a_stage_process_ends_with_its_status_and_its_output(body, status, tmp_path):
    """Run as a program: a failure keeps exit status 1, exit handlers registered during
    the stage (temporary files) still run, and what they print still reaches a pipe."""
    script = tmp_path / "stage.py"
    script.write_text(
        textwrap.dedent(f"""
        import atexit, sys
        from pipeline.config import stage_main

        def at_exit():
            open({str(tmp_path / "handler-ran")!r}, "w").close()
            sys.stdout.write(", and the exit handler's")  # after Python's own flush

        def run(cfg):
            atexit.register(at_exit)
            sys.stdout.write("last line")
            {body}

        stage_main(run, (ValueError,))
        """)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a real buffer
    done = subprocess.run(
        [sys.executable, str(script), "train.epochs=2"], capture_output=True, text=True, env=env
    )
    assert done.returncode == status, done.stderr
    assert done.stdout == "last line, and the exit handler's"
    assert (tmp_path / "handler-ran").exists()
    if status:
        assert done.stderr == "error: bad input\n"
