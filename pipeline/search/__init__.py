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

from pipeline.search.recovery import recover_abandoned_trials
from pipeline.search.settings import validate_settings
from pipeline.search.space import check_space, configured_values, estimator_overrides
from pipeline.search.stage import run
from pipeline.search.study import create_study, make_pruner, make_sampler, make_storage, study_name
from pipeline.search.workers import StudyIncomplete, TrialsFailing

__all__ = [
    "StudyIncomplete", "TrialsFailing", "check_space", "configured_values", "create_study",
    "estimator_overrides", "make_pruner", "make_sampler", "make_storage",
    "recover_abandoned_trials", "run", "study_name", "validate_settings",
]  # fmt: skip
