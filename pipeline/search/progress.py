"""What a running search shows: a bar over trials, one line per finished trial.

A thread of the stage's process polls the study (every worker writes there, whichever
process it runs in) and prints, for each trial that ends::

    trial 4 PRUNED  val_accuracy 0.9613  best 0.9840 (trial 0)  eta=0.31 lambda=0.02 m=20
        3 epochs, 6.1 s; elapsed 0:41

above a tqdm bar ``search cnn-mnist_sample-1a2b3c4d: 5/12 trials [00:41<00:57, left 1:19]``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

SYMBOLS = {"learning_rate": "eta", "l2": "lambda", "batch_size": "m"}
DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_line(trial: FrozenTrial, best: FrozenTrial | None, elapsed: float) -> str:
    """One line about a finished trial (number, state, value, best so far, params, time)."""
    value = "-" if trial.value is None else f"{trial.value:.4f}"
    last = list(trial.intermediate_values.values())
    if trial.value is None and last:
        value = f"{max(last):.4f}"
    params = " ".join(f"{SYMBOLS.get(k, k)}={short(v)}" for k, v in trial.params.items())
    best_text = f"best {best.value:.4f} (trial {best.number})" if best else "best -"
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    role = " (baseline)" if trial.user_attrs.get("baseline") else ""
    reason = trial.user_attrs.get("reason", "") if trial.state != TrialState.COMPLETE else ""
    return (
        f"trial {trial.number}{role} {trial.state.name:<8} val {value}  {best_text}  {params}  "
        f"{trial.user_attrs.get('epochs', '?')} epochs, {seconds:.1f} s; "
        f"elapsed {format_seconds(elapsed)}" + (f"  [{reason}]" if reason else "")
    )


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class Progress:
    """Poll the study in a thread; show the bar and the finished trials' lines."""

    def __init__(
        self, open_study: Callable[[], optuna.Study], n_trials: int, deadline: float | None,
        interval: float = 1.0,
    ) -> None:  # fmt: skip
        self.open_study = open_study
        self.n_trials = n_trials
        self.deadline = deadline
        self.interval = interval
        self.started = time.monotonic()
        self.seen: set[int] = set()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="search-progress", daemon=True)
        self.bar: tqdm | None = None
        self.study: optuna.Study | None = None
        self.postfix: dict[str, str] = {}

    def __enter__(self) -> Progress:
        self.study = self.open_study()
        done = [t for t in self.study.get_trials(deepcopy=False) if t.state in DONE]
        self.seen = {t.number for t in done}
        finished = sum(t.state != TrialState.FAIL for t in done)
        self.bar = tqdm(
            total=self.n_trials, initial=min(finished, self.n_trials), unit="trial",
            desc=f"search {self.study.study_name}", dynamic_ncols=True,
        )  # fmt: skip
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)
        self.poll()  # the last trials
        if self.bar is not None:
            self.bar.close()

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a busy database now and then: try again next time
                continue

    def poll(self) -> None:
        if self.study is None or self.bar is None:
            return
        trials = self.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        elapsed = time.monotonic() - self.started
        for trial in trials:
            if trial.state in DONE and trial.number not in self.seen:
                self.seen.add(trial.number)
                best = max(complete, key=lambda t: t.value, default=None)
                self.bar.write(trial_line(trial, best, elapsed))
                if trial.state != TrialState.FAIL:
                    self.bar.update(1)
        postfix = {}
        if complete:
            postfix["best"] = f"{max(t.value for t in complete):.4f}"
        if self.deadline is not None:  # to 10 s
            left = max(0.0, self.deadline - time.time())
            postfix["time left"] = format_seconds(10 * round(left / 10))
        if postfix != self.postfix:  # redraw on news only (quiet in a log file)
            self.postfix = postfix
            self.bar.set_postfix(postfix, refresh=True)
