"""Hyper-parameter search with Optuna: one module per responsibility.

- :mod:`~pipeline.search.space`: the space's cross-field checks (:func:`check_space`),
  sampling, the configured (baseline) values, searched values as a config fragment;
- :mod:`~pipeline.search.settings`: the ``search`` section's checks, in one place;
- :mod:`~pipeline.search.study`: sampler, pruner, storage, study name, study creation;
- :mod:`~pipeline.search.objective`: one trial (train, report per epoch, prune);
- :mod:`~pipeline.search.recovery`: trials whose worker died (heartbeats, pid + host);
- :mod:`~pipeline.search.workers`: the budget lock, worker processes;
- :mod:`~pipeline.search.progress`: progress bar and one line per finished trial;
- :mod:`~pipeline.search.outputs`: best_params.yaml, trials.csv, summary.md, plots;
- :mod:`~pipeline.search.optuna_compat`: every use of Optuna's private API;
- :mod:`~pipeline.search.stage`: the stage (``python -m pipeline.search``).
"""

from importlib import import_module

# Loaded on first use (Optuna is heavy; config validation imports search.space alone).
_EXPORTS = {
    "run": "stage",
    "validate_settings": "settings",
    "check_space": "space",
    "configured_values": "space",
    "estimator_overrides": "space",
    "recover_abandoned_trials": "recovery",
    "create_study": "study",
    "make_pruner": "study",
    "make_sampler": "study",
    "make_storage": "study",
    "study_name": "study",
    "StudyIncomplete": "errors",
    "TrialsFailing": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
