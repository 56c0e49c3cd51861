"""Nielsen's *Neural Networks and Deep Learning* networks in NumPy, as scikit-learn
estimators, inside a Hydra + DVC + MLflow + Optuna experiment pipeline.

The estimators are imported on first use (``pipeline.MLPClassifier``), so that importing a
low layer (``pipeline.nn``, ``pipeline.data``, ``pipeline.io``) does not load scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.estimators import (
        CNNClassifier,
        DivergenceError,
        EpochInfo,
        MLPClassifier,
        MLPRegressor,
    )

__all__ = ["CNNClassifier", "DivergenceError", "EpochInfo", "MLPClassifier", "MLPRegressor"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("pipeline.estimators"), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
