"""Nielsen's *Neural Networks and Deep Learning* networks in NumPy, as scikit-learn
estimators, inside a Hydra + DVC + MLflow + Optuna experiment pipeline."""

from pipeline.estimators import CNNClassifier, DivergenceError, EpochInfo, MLPClassifier

__all__ = ["CNNClassifier", "DivergenceError", "EpochInfo", "MLPClassifier"]
__version__ = "0.1.0"
