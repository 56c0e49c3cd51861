"""The search's own errors, in a module without Optuna: the stage's entry point names them
(``python -m pipeline.search --help`` imports no Optuna)."""


class OptunaVersionError(RuntimeError):
    """The installed Optuna is a major version this module was not written for."""


class TrialsFailing(RuntimeError):
    """Trial after trial fails: a bug or a value every trial hits, not bad luck."""


class StudyIncomplete(RuntimeError):
    """The study cannot reach ``n_trials`` now: trials run (or hang) where we cannot see."""
