"""scikit-learn estimators over the NumPy networks of :mod:`pipeline.nn`.

:class:`MLPClassifier` is the book's fully connected network (chapters 1-3),
:class:`CNNClassifier` its convolutional network (chapter 6) and :class:`MLPRegressor` the
same fully connected network with an identity output and the quadratic cost (chapter 4's
universality). All train with mini-batch SGD, monitor a validation set every epoch when
they have one, and report each epoch to callbacks, which is how tracking and the
hyper-parameter search watch (and stop) training.

An estimator owns its state: :meth:`_NetworkEstimator._get_state` and
:meth:`_NetworkEstimator._set_state` read and write everything it learned (one list of
fitted attributes, ``_fitted_attributes``), which is all :mod:`pipeline.artifacts` uses.
A ``fit`` or ``partial_fit`` that raises leaves the estimator as it was before the call.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from pipeline.nn import (
    SGD,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Layer,
    LearningRateSchedule,
    MaxPool2D,
    Network,
    Regularizer,
    get_activation,
    get_cost,
)
from pipeline.nn.activations import HIDDEN_ACTIVATIONS, Activation, row_sum
from pipeline.nn.costs import Cost
from pipeline.nn.initializers import INITS


class DivergenceError(ArithmeticError):
    """Training produced a NaN or infinite loss or weights, or outputs saturated at 0 for
    most samples' own class (eta too large, usually)."""


@dataclass(frozen=True)
class EpochInfo:
    """What a callback sees after every epoch.

    ``validation_accuracy`` and ``validation_loss`` are None when training has no
    validation set; ``gradient_norms`` is None unless ``track_gradient_norms=True``.
    For a regressor ``validation_accuracy`` holds the validation R^2 (``score_name`` says
    which): the score that early stopping and the halving schedule watch.
    """

    epoch: int
    train_loss: float
    validation_accuracy: float | None
    validation_loss: float | None
    learning_rate: float
    gradient_norms: dict[str, float] | None = field(default=None)
    score_name: str = "accuracy"

    def metrics(self) -> dict[str, float | None]:
        """The epoch's figures under flat names (``val_accuracy``, ``grad_norm_dense1``)."""
        figures = {
            "train_loss": self.train_loss,
            "val_loss": self.validation_loss,
            f"val_{self.score_name}": self.validation_accuracy,
            "learning_rate": self.learning_rate,
        }
        for layer, norm in (self.gradient_norms or {}).items():
            figures[f"grad_norm_{layer}"] = norm
        return figures


EpochCallback = Callable[[EpochInfo], bool | None]
"""Called after every epoch; returning True stops training (raising works too)."""

# Rows per forward pass at prediction time: keeps memory bounded on large inputs.
_PREDICT_CHUNK = {"mlp": 8192, "cnn": 512}
# Training samples on which per-layer gradient norms are measured each epoch (chapter 5).
_GRADIENT_NORM_SAMPLES = 1000


def _generator(random_state) -> np.random.Generator:
    """A numpy Generator from sklearn's random_state convention (None, int, RandomState)."""
    if random_state is None or isinstance(random_state, Integral):
        return np.random.default_rng(random_state)
    return np.random.default_rng(check_random_state(random_state).randint(2**31 - 1))


def _saturated_fraction(outputs: np.ndarray, Y: np.ndarray) -> float:
    """The fraction of samples whose own class's output a^L_y is 0 in the network's float
    type (one-hot Y). A learning rate too large drives the weights up until the outputs
    saturate at 0 and 1; the costs' clipped logs keep the loss finite then (about 16 per
    wrong output in float32), so a NaN check alone misses it. A network that learns
    nothing still gives each class about its frequency."""
    own = np.einsum("ij,ij->i", outputs, Y)
    return float(np.mean(own <= np.finfo(outputs.dtype).tiny))


def _whole_number(value, name: str, context) -> int:
    """``value`` as an int if it is a whole number (not a bool); else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, Real) or not float(value).is_integer():
        raise ValueError(f"{name}: {value!r} in {context!r} is not a whole number")
    return int(value)


def _as_network_dtype(X: np.ndarray, dtype: str, what: str) -> np.ndarray:
    """X as a C-contiguous array of ``dtype``; values beyond its range are an error, not inf."""
    limit = np.finfo(dtype).max
    if X.dtype != dtype and X.size and np.abs(X).max() > limit:
        raise ValueError(
            f"{what} has values up to {np.abs(X).max():.3g}, beyond the {dtype} range "
            f"(+-{limit:.3g}) the model computes in; scale the input"
        )
    return np.ascontiguousarray(X, dtype=dtype)


def _fitted_value(name: str, value: Any) -> Any:
    """A fitted attribute's JSON value, checked: a count, a score, or a list (None allowed
    where the attribute is None without a validation set or gradient tracking)."""
    if name == "n_iter_":
        count = _whole_number(value, name, value)
        if count < 0:
            raise ValueError(f"n_iter: {count} must be >= 0")
        return count
    if name == "best_validation_score_":
        if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
            raise ValueError(f"best_validation_score: {value!r} is not a number")
        return value
    if name in ("loss_curve_", "learning_rate_curve_"):
        value = [] if value is None else value
    if value is not None and not isinstance(value, list):
        raise ValueError(f"{name.rstrip('_')}: {str(value)[:60]} is not a list")
    return value


def _feature_names(names: Any, n_features: int) -> np.ndarray:
    """Saved column names, checked: ``n_features`` strings, as ``feature_names_in_``."""
    if (
        not isinstance(names, list)
        or len(names) != n_features
        or not all(isinstance(name, str) for name in names)
    ):
        raise ValueError(
            f"feature_names_in: expected {n_features} column names, got {str(names)[:60]}"
        )
    return np.asarray(names, dtype=object)


@dataclass(frozen=True)
class _LayerSpec:
    """One layer of a network plan: built into a :class:`Layer` or sized without allocating.

    ``kind`` is "dense", "conv", "pool", "dropout" or "flatten"; ``sizes`` its integers
    (dense: n_in, n_out; conv: in_channels, filters, kernel; pool: pool size), ``value``
    its rate (dropout) and ``activation`` its sigma's name.
    """

    kind: str
    sizes: tuple[int, ...] = ()
    activation: str = "identity"
    value: float = 0.0

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.kind == "dense":
            n_in, n_out = self.sizes
            return {"W": (n_in, n_out), "b": (n_out,)}
        if self.kind == "conv":
            channels, filters, k = self.sizes
            return {"W": (k, k, channels, filters), "b": (filters,)}
        return {}

    def build(self, rng: np.random.Generator, init: str, dtype: np.dtype) -> Layer:
        if self.kind == "dense":
            return Dense(*self.sizes, get_activation(self.activation), rng, init, dtype)
        if self.kind == "conv":
            return Conv2D(*self.sizes, get_activation(self.activation), rng, init, dtype)
        if self.kind == "pool":
            return MaxPool2D(self.sizes[0])
        if self.kind == "dropout":
            return Dropout(self.value, rng)
        return Flatten()


class _Transaction:
    """Undo for a ``fit`` / ``partial_fit`` that raises: the estimator's learned state as it
    was when the call began (weights copied, curves copied, the random generator's state).

    A callback's exception is a deliberate stop (a pruned trial): :meth:`keep` marks the
    epochs trained so far as real, finite state, which is then kept.
    """

    def __init__(self, estimator: _NetworkEstimator) -> None:
        self.estimator = estimator
        self.kept = False
        names = estimator._all_attributes()
        self.saved = {name: getattr(estimator, name) for name in names if hasattr(estimator, name)}
        self.curves = {
            name: copy.deepcopy(value)
            for name, value in self.saved.items()
            if isinstance(value, list)
        }
        self.network = self.saved.get("network_")
        self.weights = self.network.get_state() if self.network is not None else None
        rng = self.saved.get("_rng")
        self.rng_state = rng.bit_generator.state if rng is not None else None

    def keep(self) -> None:
        self.kept = True

    def restore(self) -> None:
        est = self.estimator
        est._forget_fit()
        for name, value in {**self.saved, **self.curves}.items():
            setattr(est, name, value)
        if self.network is not None:
            self.network.set_state(self.weights)
            self.network.release_buffers()
        if self.rng_state is not None:
            est._rng.bit_generator.state = self.rng_state


class _NetworkEstimator(BaseEstimator):
    """Training, prediction, validation and state shared by the classifiers and the regressor.

    Subclasses define the task (``_start_targets``, ``_targets``, ``_score_outputs``...),
    ``_layer_plan``, and list every parameter in their ``__init__``.
    """

    _kind = "mlp"
    _score_name = "accuracy"
    _common_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions({"constant", "halving"})],
        "schedule_patience": [Interval(Integral, 1, None, closed="left")],
        "schedule_min_fraction": [Interval(Real, 0, 1, closed="neither")],
        "l2": [Interval(Real, 0, None, closed="left")],
        "l1": [Interval(Real, 0, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "init": [StrOptions(set(INITS))],
        "early_stopping": ["boolean"],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "track_gradient_norms": ["boolean"],
        "random_state": ["random_state"],
        "dtype": [StrOptions({"float32", "float64"})],
    }
    _parameter_constraints: dict = _common_constraints

    # The one list of what fitting learns (saved and loaded by _get_state / _set_state);
    # subclasses put their target description (classes_ or n_outputs_) first.
    _fitted_attributes: tuple[str, ...] = (
        "n_features_in_",
        "n_iter_",
        "loss_curve_",
        "validation_scores_",
        "validation_loss_curve_",
        "best_validation_score_",
        "learning_rate_curve_",
        "gradient_norms_",
    )
    # Fitted attributes that _set_state restores before building the network.
    _target_attributes: tuple[str, ...] = ("n_features_in_",)
    # Fitted attributes that only some fits set (the column names of a DataFrame X, as
    # scikit-learn's validate_data records them): saved when set.
    _optional_attributes: tuple[str, ...] = ("feature_names_in_",)
    # Derived from the parameters and the fitted attributes, never saved.
    _runtime_attributes: tuple[str, ...] = ("network_", "_rng", "_input_shape")

    # --- task: defined by the classifier and the regressor ---------------------------------
    def _output_activation_name(self) -> str:
        raise NotImplementedError

    def _cost_name(self) -> str:
        raise NotImplementedError

    def _validate_Xy(self, X, y, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _start_targets(self, y: np.ndarray, classes) -> None:
        """Set the target description (``classes_`` or ``n_outputs_``) for a first fit."""
        raise NotImplementedError

    def _check_same_targets(self, y: np.ndarray, classes) -> None:
        """A later ``partial_fit``: the targets must match those of the first call."""

    def _n_outputs(self) -> int:
        raise NotImplementedError

    def _targets(self, y, what: str = "y") -> np.ndarray:
        """The network's target activations for y, shape (n_samples, n_outputs)."""
        raise NotImplementedError

    def _score_outputs(self, A: np.ndarray, Y: np.ndarray) -> float:
        """The validation score of outputs A against targets Y (higher is better)."""
        raise NotImplementedError

    def _stratify(self, Y: np.ndarray, n_val: int) -> np.ndarray | None:
        return None

    # The fewest validation samples the score is defined on.
    _MIN_VALIDATION_SAMPLES = 1

    def _check_training_part(self, Y_train: np.ndarray, n: int) -> None:
        """Refuse a training part of the early-stopping split that cannot be learned from."""

    # --- construction ----------------------------------------------------------------------
    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        if any(not isinstance(s, Integral) or isinstance(s, bool) or s < 1 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive integers; got {self.hidden_layer_sizes!r}"
            )
        return [int(s) for s in sizes]

    def _layer_plan(self, n_features: int, n_outputs: int) -> list[_LayerSpec]:
        """The layers for ``n_features`` inputs and ``n_outputs`` outputs, not yet built."""
        return self._dense_plan(n_features, n_outputs)

    def _dense_plan(self, n_in: int, n_outputs: int) -> list[_LayerSpec]:
        """Hidden Dense layers (each followed by dropout if any) and the output layer."""
        plan: list[_LayerSpec] = []
        for size in self._hidden_sizes():
            plan.append(_LayerSpec("dense", (n_in, size), self.activation))
            if self.dropout > 0:
                plan.append(_LayerSpec("dropout", value=self.dropout))
            n_in = size
        plan.append(_LayerSpec("dense", (n_in, n_outputs), self._output_activation_name()))
        return plan

    def _parameter_shapes(self, n_features: int, n_outputs: int) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every network parameter ("0.W", "0.b", ...), nothing allocated."""
        return {
            f"{i}.{key}": shape
            for i, spec in enumerate(self._layer_plan(n_features, n_outputs))
            for key, shape in spec.parameter_shapes().items()
        }

    def _initialize(self, n_features: int) -> None:
        """Fresh network and learned state for ``n_features`` inputs (targets already set)."""
        self.n_features_in_ = n_features
        self._rng = _generator(self.random_state)
        dtype = np.dtype(self.dtype)
        plan = self._layer_plan(n_features, self._n_outputs())
        layers = [spec.build(self._rng, self.init, dtype) for spec in plan]
        self.network_ = Network(layers, get_cost(self._cost_name()), Regularizer(self.l2, self.l1))
        self.n_iter_ = 0
        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] | None = None
        self.validation_loss_curve_: list[float] | None = None
        self.best_validation_score_: float | None = None
        self.learning_rate_curve_: list[float] = []
        self.gradient_norms_: list[dict[str, float]] | None = None

    def _network_input(self, X: np.ndarray) -> np.ndarray:
        """X rows as the network's first layer expects them (the CNN reshapes to images)."""
        return X

    def _forget_fit(self) -> None:
        """Remove the learned state, so that the estimator is unfitted again."""
        for name in self._all_attributes():
            if hasattr(self, name):
                delattr(self, name)

    @classmethod
    def _all_attributes(cls) -> tuple[str, ...]:
        return (*cls._fitted_attributes, *cls._optional_attributes, *cls._runtime_attributes)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Transaction]:
        """Run a fitting call; if it raises, restore the state from before the call."""
        transaction = _Transaction(self)
        try:
            yield transaction
        except BaseException:
            if not transaction.kept:
                transaction.restore()
            raise

    # --- state -----------------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(the fitted attributes as JSON values, the network's parameter arrays).

        The first maps each name of ``_fitted_attributes`` without its trailing underscore
        ("n_iter", "loss_curve", ...) to its value, and ``feature_names_in`` to the column
        names when the fit recorded them; :meth:`_set_state` takes both back.
        """
        check_is_fitted(self)
        state = {name.rstrip("_"): self._attribute_json(name) for name in self._fitted_attributes}
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in"] = [str(name) for name in self.feature_names_in_]
        return state, self.network_.get_state()

    def _attribute_json(self, name: str) -> Any:
        return getattr(self, name)

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
        """Become the fitted estimator described by ``state`` with these network parameters.

        ``state`` is what :meth:`_get_state` returned (any extra keys are ignored).
        ``arrays`` maps parameter names to arrays, or to anything with ``shape`` and
        ``dtype`` that ``np.asarray`` turns into one (an array not yet read from a file):
        the parameters are validated and every shape is checked against the network they
        describe before that network is built, so a description that does not fit its
        arrays allocates nothing. Raises ValueError (InvalidParameterError for a bad
        parameter, KeyError for a missing field) naming what does not fit, and then leaves
        the estimator unfitted.
        """
        self._validate_params()
        self._forget_fit()
        try:
            self._restore_targets(state)
            n_features = _whole_number(state["n_features_in"], "n_features_in", state)
            if n_features < 1:
                raise ValueError(f"n_features_in: {n_features} must be >= 1")
            names = state.get("feature_names_in")
            if names is not None:
                self.feature_names_in_ = _feature_names(names, n_features)
            self._check_arrays(self._parameter_shapes(n_features, self._n_outputs()), arrays)
            self._initialize(n_features)
            values = {name: np.asarray(array) for name, array in arrays.items()}
            for name, value in values.items():
                if not np.isfinite(value).all():
                    raise ValueError(f"parameter {name!r} is not finite float data")
            self.network_.set_state(values)
            for name in self._fitted_attributes:
                if name not in self._target_attributes and name.rstrip("_") in state:
                    setattr(self, name, _fitted_value(name, state[name.rstrip("_")]))
        except BaseException:
            self._forget_fit()
            raise

    @staticmethod
    def _check_arrays(expected: Mapping[str, tuple[int, ...]], arrays: Mapping[str, Any]) -> None:
        """The arrays' names, shapes and float dtypes are those of the network described."""
        if set(expected) != set(arrays):
            raise ValueError(
                f"parameter names differ: expected {sorted(expected)}, got {sorted(arrays)}"
            )
        for name, shape in expected.items():
            got = tuple(arrays[name].shape)
            if got != shape:
                raise ValueError(f"parameter {name!r} has shape {got}, expected {shape}")
            if np.dtype(arrays[name].dtype).kind != "f":
                raise ValueError(f"parameter {name!r} is {arrays[name].dtype}, not float data")

    def _restore_targets(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    # --- input checks ----------------------------------------------------------------------
    def _validate_X(self, X, reset: bool) -> np.ndarray:
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        return _as_network_dtype(X, self.dtype, "X")

    def _validation_set(self, validation_data):
        if validation_data is None:
            return None
        try:
            X_val, y_val = validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (X_val, y_val)") from None
        X_val = self._validate_X(X_val, reset=False)
        y_val = np.asarray(y_val)
        if y_val.ndim not in (1, 2) or len(y_val) != len(X_val):
            raise ValueError(
                f"validation_data: y_val must have {len(X_val)} rows; got shape {y_val.shape}"
            )
        if len(y_val) < self._MIN_VALIDATION_SAMPLES:
            raise ValueError(
                f"validation_data: {len(y_val)} sample(s); the validation score needs at "
                f"least {self._MIN_VALIDATION_SAMPLES}"
            )
        return self._network_input(X_val), self._targets(y_val, "y_val")

    def check_params(self) -> None:
        """Check the parameters as fitting does, before any data: for values chosen ahead of
        a fit (a search space's, a book experiment's rows). Raises scikit-learn's
        InvalidParameterError, a ValueError naming the parameter."""
        self._validate_params()
        self._check_integer_params()

    # Integer parameters: sklearn's Integral constraint lets True and False through.
    _INTEGER_PARAMS = ("batch_size", "epochs", "n_iter_no_change", "schedule_patience")

    def _check_integer_params(self) -> None:
        for name in self._INTEGER_PARAMS:
            if isinstance(getattr(self, name), bool):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be an int in the "
                    f"range [1, inf). Got {getattr(self, name)!r} instead."
                )

    # --- fitting ---------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X,
        y,
        *,
        validation_data: tuple | None = None,
        callbacks: Sequence[EpochCallback] = (),
    ):
        """Train from scratch for up to ``epochs`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,): labels for a classifier; real targets, shape
            (n_samples,) or (n_samples, n_outputs), for a regressor
        validation_data : (X_val, y_val), optional
            Held-out data scored every epoch. Without it, ``early_stopping`` and the halving
            schedule split ``validation_fraction`` of (X, y) off (stratified for a classifier).
        callbacks : callables taking an :class:`EpochInfo`; one returning True stops training.

        If fitting raises, the estimator is left as it was before the call; except when a
        callback raises (a deliberate stop, say a pruned trial): the epochs trained so far
        are kept in the weights, ``n_iter_`` and the curves.
        """
        with self._transaction() as transaction:
            self._check_integer_params()
            X, y = self._validate_Xy(X, y, reset=True)
            self._start_targets(y, None)
            self._initialize(X.shape[1])
            Y = self._targets(y)
            validation = self._validation_set(validation_data)
            needs_validation = self.early_stopping or self.learning_rate_schedule == "halving"
            if validation is None and needs_validation:
                X, Y, validation = self._split_validation(X, Y)
            self._train(X, Y, self.epochs, validation, callbacks, True, transaction)
        return self

    def _split_validation(self, X: np.ndarray, Y: np.ndarray):
        n_val = math.ceil(self.validation_fraction * len(X))
        if n_val < self._MIN_VALIDATION_SAMPLES or len(X) - n_val < 1:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves {len(X) - n_val} "
                f"training and {n_val} validation samples out of {len(X)}; early stopping "
                f"needs at least 1 and {self._MIN_VALIDATION_SAMPLES}"
            )
        seed = int(self._rng.integers(2**31 - 1))
        X_tr, X_val, Y_tr, Y_val = train_test_split(
            X, Y, test_size=n_val, stratify=self._stratify(Y, n_val), random_state=seed
        )
        self._check_training_part(Y_tr, len(X))
        return X_tr, Y_tr, (self._network_input(X_val), Y_val)

    def _partial_fit(self, X, y, classes, validation_data, callbacks):
        """One epoch of SGD over (X, y), continuing from the current weights."""
        with self._transaction() as transaction:
            first_call = not self.__sklearn_is_fitted__()
            if first_call:
                self.check_params()
                self._check_first_partial_fit(classes)
            X, y = self._validate_Xy(X, y, reset=first_call)
            if first_call:
                self._start_targets(y, classes)
                self._initialize(X.shape[1])
            else:
                self._check_same_targets(y, classes)
            validation = self._validation_set(validation_data)
            self._train(X, self._targets(y), 1, validation, callbacks, False, transaction)
        return self

    def _check_first_partial_fit(self, classes) -> None:
        """What the first ``partial_fit`` needs beyond X and y (a classifier: ``classes``)."""

    def _train(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        epochs: int,
        validation: tuple[np.ndarray, np.ndarray] | None,
        callbacks: Sequence[EpochCallback],
        use_schedule: bool,
        transaction: _Transaction,
    ) -> None:
        """The SGD loop: shuffle once per epoch, step through mini-batches, then score.

        Y holds the target activations, shape (n_samples, n_outputs).
        """
        net = self.network_
        n = len(X)
        X = self._network_input(X)
        schedule = LearningRateSchedule(
            self.learning_rate,
            self.learning_rate_schedule if use_schedule else "constant",
            self.schedule_patience,
            min_fraction=self.schedule_min_fraction,
        )
        optimizer = SGD(self.learning_rate, self.momentum)
        batch = min(self.batch_size, n)
        early_stopping = self.early_stopping and use_schedule and validation is not None
        best_state, best_score, stale_epochs = None, -np.inf, 0
        if validation is not None and self.validation_scores_ is None:
            self.validation_scores_, self.validation_loss_curve_ = [], []
        if self.track_gradient_norms and self.gradient_norms_ is None:
            self.gradient_norms_ = []

        outputs = np.empty_like(Y)  # a^L of every sample as it was trained on, this epoch
        x_batch = np.empty((batch, *X.shape[1:]), X.dtype)  # the mini-batch, copied from X
        saturated_check = is_classifier(self)  # one-hot targets (see _saturated_fraction)
        try:
            for _ in range(epochs):
                order = self._rng.permutation(n)  # shuffle by index, once per epoch
                Y_epoch = Y[order]  # the (small) targets in training order
                optimizer.learning_rate = schedule.eta
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    for start in range(0, n, batch):
                        end = min(start + batch, n)
                        # Gather the batch's rows into one reused buffer: X is never copied whole,
                        # and the rows go straight from the cache into the first matrix product.
                        xb = np.take(
                            X, order[start:end], axis=0, out=x_batch[: end - start], mode="clip"
                        )
                        outputs[start:end] = net.train_batch(xb, Y_epoch[start:end], n, optimizer)
                    # The epoch's training loss: the mean cost of the mini-batches' outputs as
                    # they were seen, plus the weight penalty at the end of the epoch.
                    loss = net.cost.fn(outputs, Y_epoch) + net.regularizer.penalty(net.weights, n)
                if not math.isfinite(loss) or not all(np.isfinite(w).all() for w in net.weights):
                    raise DivergenceError(
                        f"training diverged: loss is {loss} in epoch {self.n_iter_ + 1} "
                        f"(learning_rate={schedule.eta:g}); try a smaller learning_rate"
                    )
                if saturated_check and _saturated_fraction(outputs, Y_epoch) > 0.5:
                    raise DivergenceError(
                        f"training diverged: the outputs saturated in epoch {self.n_iter_ + 1}, "
                        "more than half the training samples getting their own class with "
                        f"probability 0 (learning_rate={schedule.eta:g}); try a smaller "
                        "learning_rate"
                    )
                self.n_iter_ += 1
                self.loss_curve_.append(loss)
                self.learning_rate_curve_.append(schedule.eta)
                info = self._epoch_info(X, Y, n, validation, schedule.eta)
                stop = schedule.update(info.validation_accuracy)
                if early_stopping:
                    if info.validation_accuracy > best_score:
                        best_score, best_state, stale_epochs = (
                            info.validation_accuracy,
                            net.get_state(),
                            0,
                        )
                    else:
                        stale_epochs += 1
                        stop = stop or stale_epochs >= self.n_iter_no_change
                try:
                    if any([bool(callback(info)) for callback in callbacks]):
                        stop = True
                except BaseException:
                    transaction.keep()  # a deliberate stop: the epochs so far are real
                    raise
                if stop:
                    break
        finally:
            # Work buffers and the last batch's caches are memory, not model: free them.
            net.release_buffers()
        if best_state is not None:
            net.set_state(best_state)

    def _epoch_info(self, X, Y, n, validation, eta: float) -> EpochInfo:
        """Score the epoch: validation score and loss, gradient norms if asked."""
        val_score = val_loss = norms = None
        if validation is not None:
            X_val, Y_val = validation
            with np.errstate(over="ignore", invalid="ignore"):
                outputs = self._forward_chunked(X_val)
            val_score = self._score_outputs(outputs, Y_val)
            val_loss = self.network_.cost.fn(outputs, Y_val) + self.network_.regularizer.penalty(
                self.network_.weights, n
            )
            self.validation_scores_.append(val_score)
            self.validation_loss_curve_.append(val_loss)
            self.best_validation_score_ = max(self.validation_scores_)
        if self.track_gradient_norms:
            k = min(n, _GRADIENT_NORM_SAMPLES)
            self.network_.backprop(X[:k], Y[:k], n)
            norms = self.network_.gradient_norms()
            self.gradient_norms_.append(norms)
        return EpochInfo(
            epoch=self.n_iter_,
            train_loss=self.loss_curve_[-1],
            validation_accuracy=val_score,
            validation_loss=val_loss,
            learning_rate=eta,
            gradient_norms=norms,
            score_name=self._score_name,
        )

    # --- prediction ------------------------------------------------------------------------
    def _forward_chunked(self, X_net: np.ndarray) -> np.ndarray:
        chunk = _PREDICT_CHUNK[self._kind]
        with np.errstate(over="ignore", invalid="ignore"):
            parts = [
                self.network_.forward(X_net[i : i + chunk]) for i in range(0, len(X_net), chunk)
            ]
        return np.concatenate(parts) if parts else np.zeros((0, self._n_outputs()), self.dtype)

    def _predict_outputs(self, X) -> np.ndarray:
        """The output activations a^L for X in float64, shape (n_samples, n_outputs).

        Inputs far outside the training range can overflow the network's arithmetic: that
        is a ValueError naming the rows, never NaN outputs.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        a = self._forward_chunked(self._network_input(X)).astype(np.float64)
        bad = ~np.isfinite(a).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            largest = np.abs(X[rows[0]]).max()
            raise ValueError(
                f"X: the network's outputs overflow ({self.dtype}) for {len(rows)} of "
                f"{len(a)} rows (first: row {rows[0]}, largest |x| {largest:.3g}); "
                "inputs are far outside the range the model was trained on"
            )
        return a

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight arrays of the parameterised layers, input to output."""
        check_is_fitted(self)
        return self.network_.weights

    @property
    def intercepts_(self) -> list[np.ndarray]:
        check_is_fitted(self)
        return [layer.params["b"] for layer in self.network_.layers if "b" in layer.params]

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "network_")


class _NetworkClassifier(ClassifierMixin, _NetworkEstimator):
    """A network whose outputs are class scores: one output neuron per class."""

    _parameter_constraints: dict = {
        **_NetworkEstimator._common_constraints,
        "output_activation": [StrOptions({"auto", "sigmoid", "softmax"})],
        "cost": [StrOptions({"quadratic", "cross_entropy", "log_likelihood"})],
    }
    _fitted_attributes = ("classes_", *_NetworkEstimator._fitted_attributes)
    _target_attributes = ("classes_", "n_features_in_")

    def _output_activation_name(self) -> str:
        if self.output_activation != "auto":
            return self.output_activation
        return "softmax" if self.cost == "log_likelihood" else "sigmoid"

    def _cost_name(self) -> str:
        return self.cost

    def _validate_Xy(self, X, y, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        return _as_network_dtype(X, self.dtype, "X"), y

    def _check_first_partial_fit(self, classes) -> None:
        if classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")

    def _start_targets(self, y: np.ndarray, classes) -> None:
        if classes is None:
            classes = np.unique(y)
            if len(classes) < 2:
                raise ValueError(
                    f"y has only 1 class {classes.tolist()}; a classifier needs at least 2 classes"
                )
        else:
            classes = np.unique(np.asarray(classes))
            if len(classes) < 2:
                raise ValueError(f"classes={classes.tolist()}: need at least 2 classes")
        self.classes_ = classes

    def _check_same_targets(self, y: np.ndarray, classes) -> None:
        if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.unique(classes).tolist()} differs from the classes of the first "
                f"call {self.classes_.tolist()}"
            )

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _encode(self, y: np.ndarray, what: str = "y") -> np.ndarray:
        """Class indices 0..K-1 of labels y; an unseen label is an error."""
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"{what} must be 1-D labels; got shape {y.shape}")
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if np.any(unknown):
            raise ValueError(
                f"{what} contains labels not among the classes {self.classes_.tolist()}: "
                f"{np.unique(np.asarray(y)[unknown]).tolist()[:10]}"
            )
        return idx

    def _targets(self, y, what: str = "y") -> np.ndarray:
        return np.eye(len(self.classes_), dtype=self.dtype)[self._encode(y, what)]

    def _score_outputs(self, A: np.ndarray, Y: np.ndarray) -> float:
        return float(np.mean(A.argmax(axis=1) == Y.argmax(axis=1)))

    def _stratify(self, Y: np.ndarray, n_val: int) -> np.ndarray | None:
        idx = Y.argmax(axis=1)
        counts = np.bincount(idx)
        return idx if counts[counts > 0].min() >= 2 and n_val >= len(counts) else None

    def _check_training_part(self, Y_train: np.ndarray, n: int) -> None:
        if len(np.unique(Y_train.argmax(axis=1))) < 2:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves {len(Y_train)} "
                f"training sample(s) of {n}, all of one class: too few to learn from; pass "
                "more samples, a smaller validation_fraction or early_stopping=False"
            )

    def _attribute_json(self, name: str) -> Any:
        if name == "classes_":
            return self.classes_.tolist()
        return getattr(self, name)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state, arrays = super()._get_state()
        kind = self.classes_.dtype.kind
        state["classes_dtype"] = self.classes_.dtype.str if kind != "O" else "str"
        return state, arrays

    def _restore_targets(self, state: Mapping[str, Any]) -> None:
        dtype = state["classes_dtype"]
        if not isinstance(dtype, str):
            raise ValueError(f"classes_dtype: {dtype!r} is not a dtype name")
        dtype = object if dtype == "str" else np.dtype(dtype)
        if np.dtype(dtype).kind not in "biufUO":
            raise ValueError(f"classes_dtype: {dtype!r} is not a label type")
        classes = state["classes"]
        if not isinstance(classes, list) or len(classes) < 2:
            raise ValueError(f"classes: {str(classes)[:80]} is not a list of 2 or more labels")
        self.classes_ = np.asarray(classes, dtype=dtype)
        if len(np.unique(self.classes_)) != len(classes) or not all(
            a == b for a, b in zip(self.classes_.tolist(), classes, strict=True)
        ):  # repeated, or changed by the dtype (3 as "<U1" is "3", 12 as "<U1" is "1")
            raise ValueError(
                f"classes: {str(classes)[:80]} are not distinct labels of type {dtype!r}"
            )

    def partial_fit(
        self,
        X,
        y,
        classes=None,
        *,
        validation_data: tuple | None = None,
        callbacks: Sequence[EpochCallback] = (),
    ):
        """One epoch of SGD over (X, y), continuing from the current weights.

        ``classes`` (all labels that will ever appear) is required on the first call.
        """
        return self._partial_fit(X, y, classes, validation_data, callbacks)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), rows summing to 1.

        Softmax outputs are probabilities already; sigmoid outputs are normalised per row.
        """
        a = self._predict_outputs(X)
        sums = row_sum(a)
        empty = sums[:, 0] <= 0
        if empty.any():  # every sigmoid output underflowed to 0: no class is preferred
            raise ValueError(
                f"X: every output neuron is 0 for {int(empty.sum())} rows (first: row "
                f"{int(np.flatnonzero(empty)[0])}); inputs are far outside the range the model "
                "was trained on, or its weights are saturated (a learning_rate too large)"
            )
        # Sigmoid outputs need normalising; softmax outputs computed in float32 need it too,
        # to sum to 1 in float64.
        a /= sums
        return a

    def predict(self, X) -> np.ndarray:
        """The label of the most active output neuron, shape (n_samples,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class MLPClassifier(_NetworkClassifier):
    """The book's fully connected network, trained by mini-batch SGD.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Neurons per hidden layer: (30,) is chapter 1's [784, 30, 10].
    activation : {"sigmoid", "tanh", "relu", "identity"}, default="sigmoid"
        Hidden neurons' sigma.
    output_activation : {"auto", "sigmoid", "softmax"}, default="auto"
        "auto" is softmax with the log-likelihood cost and sigmoid otherwise.
    cost : {"quadratic", "cross_entropy", "log_likelihood"}, default="cross_entropy"
    learning_rate : float, default=0.5
        eta.
    learning_rate_schedule : {"constant", "halving"}, default="constant"
        "halving": halve eta after ``schedule_patience`` epochs without validation
        improvement; stop when eta < ``schedule_min_fraction`` * eta0 (1/128 in the book).
    schedule_patience : int, default=10
    schedule_min_fraction : float, default=1/128
    l2 : float, default=0.0
        lambda of the L2 penalty (lambda / 2n) sum w^2, n the training set size.
    l1 : float, default=0.0
        lambda of the L1 penalty (lambda / n) sum |w|.
    dropout : float, default=0.0
        Probability of dropping each hidden neuron in training (inverted dropout).
    batch_size : int, default=10
        Mini-batch size m.
    epochs : int, default=30
        Maximum number of epochs of ``fit``.
    momentum : float, default=0.0
        mu of momentum-based SGD; 0 is plain SGD.
    init : {"scaled", "large", "he"}, default="scaled"
        N(0, 1/n_in) weights ("scaled", the book's improved init), N(0, 1) ("large"), or
        N(0, 2/n_in) ("he").
    early_stopping : bool, default=False
        Stop when validation accuracy has not improved for ``n_iter_no_change`` epochs and
        keep the best weights.
    n_iter_no_change : int, default=10
    validation_fraction : float, default=0.1
        Fraction of the training data held out when a validation set is needed and none is
        passed to ``fit``.
    track_gradient_norms : bool, default=False
        Record ||dC/dW|| per layer every epoch (``gradient_norms_``, chapter 5).
    random_state : int, RandomState or None, default=None
        Seeds initialisation, shuffling, dropout and the validation split.
    dtype : {"float32", "float64"}, default="float32"

    Attributes
    ----------
    classes_, n_features_in_, n_iter_ (epochs trained), loss_curve_ (mean training loss
    per epoch), validation_scores_ and validation_loss_curve_ (per epoch, None without a
    validation set), best_validation_score_, learning_rate_curve_, gradient_norms_,
    network_ (the :class:`pipeline.nn.Network`), coefs_, intercepts_.
    """

    _kind = "mlp"

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        *,
        activation: str = "sigmoid",
        output_activation: str = "auto",
        cost: str = "cross_entropy",
        learning_rate: float = 0.5,
        learning_rate_schedule: str = "constant",
        schedule_patience: int = 10,
        schedule_min_fraction: float = 1.0 / 128,
        l2: float = 0.0,
        l1: float = 0.0,
        dropout: float = 0.0,
        batch_size: int = 10,
        epochs: int = 30,
        momentum: float = 0.0,
        init: str = "scaled",
        early_stopping: bool = False,
        n_iter_no_change: int = 10,
        validation_fraction: float = 0.1,
        track_gradient_norms: bool = False,
        random_state=None,
        dtype: str = "float32",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.output_activation = output_activation
        self.cost = cost
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.schedule_patience = schedule_patience
        self.schedule_min_fraction = schedule_min_fraction
        self.l2 = l2
        self.l1 = l1
        self.dropout = dropout
        self.batch_size = batch_size
        self.epochs = epochs
        self.momentum = momentum
        self.init = init
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.track_gradient_norms = track_gradient_norms
        self.random_state = random_state
        self.dtype = dtype


class CNNClassifier(_NetworkClassifier):
    """The book's convolutional network (chapter 6): conv + max-pool layers, then dense.

    Rows of X are images flattened in row-major (height, width, channels) order.

    Parameters
    ----------
    conv_layers : sequence of (filters, kernel_size, pool_size), default=((20, 5, 2),)
        One convolutional layer (valid, stride 1, activation ``activation``) per entry, each
        followed by ``pool_size`` x ``pool_size`` max-pooling (1 means none).
    image_shape : (height, width) or (height, width, channels), default=None
        None: square single-channel images, side sqrt(n_features).
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Fully connected layers after the convolutions.
    activation : default="relu"
    cost : default="log_likelihood" (softmax output)
    learning_rate : default=0.1

    predict_flips : bool, default=False
        Average the outputs a^L for each image and its left-right mirror at prediction
        (test-time augmentation): in ``predict``, ``predict_proba``, ``score`` and the
        per-epoch validation scores. For classes that look the same mirrored, as clothes;
        not for digits.

    The remaining parameters are those of :class:`MLPClassifier`; ``dropout`` applies to the
    fully connected hidden layers, as in the book's network3.py.
    """

    _kind = "cnn"
    _parameter_constraints: dict = {
        **_NetworkClassifier._parameter_constraints,
        "conv_layers": ["array-like"],
        "image_shape": ["array-like", None],
        "predict_flips": ["boolean"],
    }

    def __init__(
        self,
        conv_layers=((20, 5, 2),),
        *,
        image_shape=None,
        hidden_layer_sizes=(100,),
        activation: str = "relu",
        output_activation: str = "auto",
        cost: str = "log_likelihood",
        learning_rate: float = 0.1,
        learning_rate_schedule: str = "constant",
        schedule_patience: int = 10,
        schedule_min_fraction: float = 1.0 / 128,
        l2: float = 0.0,
        l1: float = 0.0,
        dropout: float = 0.0,
        batch_size: int = 10,
        epochs: int = 30,
        momentum: float = 0.0,
        init: str = "scaled",
        early_stopping: bool = False,
        n_iter_no_change: int = 10,
        validation_fraction: float = 0.1,
        track_gradient_norms: bool = False,
        random_state=None,
        dtype: str = "float32",
        predict_flips: bool = False,
    ) -> None:
        self.conv_layers = conv_layers
        self.image_shape = image_shape
        self.predict_flips = predict_flips
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.output_activation = output_activation
        self.cost = cost
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.schedule_patience = schedule_patience
        self.schedule_min_fraction = schedule_min_fraction
        self.l2 = l2
        self.l1 = l1
        self.dropout = dropout
        self.batch_size = batch_size
        self.epochs = epochs
        self.momentum = momentum
        self.init = init
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.track_gradient_norms = track_gradient_norms
        self.random_state = random_state
        self.dtype = dtype

    def _resolve_image_shape(self, n_features: int) -> tuple[int, int, int]:
        if self.image_shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features:
                raise ValueError(
                    f"CNNClassifier: {n_features} features are not a square image; "
                    "pass image_shape=(height, width[, channels])"
                )
            return side, side, 1
        shape = tuple(_whole_number(s, "image_shape", self.image_shape) for s in self.image_shape)
        if len(shape) == 2:
            shape = (*shape, 1)
        if len(shape) != 3 or min(shape) < 1 or math.prod(shape) != n_features:
            raise ValueError(
                f"image_shape={self.image_shape!r} does not match {n_features} features "
                "(height * width * channels must equal n_features)"
            )
        return shape

    def _conv_specs(self) -> list[tuple[int, int, int]]:
        specs = []
        for spec in self.conv_layers:
            values = tuple(spec) if isinstance(spec, list | tuple) else ()
            if len(values) != 3:
                raise ValueError(
                    f"conv_layers entries must be (filters, kernel_size, pool_size); got {spec!r}"
                )
            filters, kernel, pool = (_whole_number(v, "conv_layers", spec) for v in values)
            if min(filters, kernel, pool) < 1:
                raise ValueError(f"conv_layers entry {spec!r}: all values must be >= 1")
            specs.append((filters, kernel, pool))
        return specs

    def _initialize(self, n_features: int) -> None:
        self._input_shape = self._resolve_image_shape(n_features)
        super()._initialize(n_features)

    def _layer_plan(self, n_features: int, n_outputs: int) -> list[_LayerSpec]:
        image = shape = self._resolve_image_shape(n_features)
        plan: list[_LayerSpec] = []
        for filters, kernel, pool in self._conv_specs():
            h, w, c = shape
            if kernel > h or kernel > w:
                raise ValueError(
                    f"conv_layers: a {kernel}x{kernel} kernel does not fit the {h}x{w} "
                    f"feature map (image_shape {image[:2]})"
                )
            plan.append(_LayerSpec("conv", (c, filters, kernel), self.activation))
            shape = (h - kernel + 1, w - kernel + 1, filters)  # Conv2D.output_shape
            if pool > 1:
                if pool > shape[0] or pool > shape[1]:
                    raise ValueError(
                        f"conv_layers: a {pool}x{pool} pool does not fit the "
                        f"{shape[0]}x{shape[1]} feature map"
                    )
                plan.append(_LayerSpec("pool", (pool,)))
                shape = (shape[0] // pool, shape[1] // pool, filters)  # MaxPool2D.output_shape
        plan.append(_LayerSpec("flatten"))
        return plan + self._dense_plan(math.prod(shape), n_outputs)

    def _network_input(self, X: np.ndarray) -> np.ndarray:
        return X.reshape((len(X), *self._input_shape))

    def _forward_chunked(self, X_net: np.ndarray) -> np.ndarray:
        a = super()._forward_chunked(X_net)
        if self.predict_flips:  # the mean over each image and its mirror (axis 2: width)
            a += super()._forward_chunked(X_net[:, :, ::-1])
            a *= a.dtype.type(0.5)
        return a


class MLPRegressor(RegressorMixin, _NetworkEstimator):
    """The book's fully connected network with linear outputs, for real-valued targets.

    The output layer is the identity, a^L = z^L, and the cost the quadratic
    C = 1/2 ||y - a^L||^2, so the output error is delta^L = a^L - y (BP1); hidden layers,
    training and regularisation are those of :class:`MLPClassifier`. One hidden layer of
    sigmoid neurons is chapter 4's universal approximator.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
    activation : {"sigmoid", "tanh", "relu", "identity"}, default="sigmoid"
    learning_rate : float, default=0.01
        eta. The quadratic cost on unbounded outputs takes steps n_hidden times larger than
        the classifiers' saturating outputs: eta is smaller.
    epochs : int, default=100
    dtype : {"float32", "float64"}, default="float64"
        Regression outputs are read as numbers, not compared: float64 by default (float32
        results of a row can differ in the last bits with the rows computed beside it).
    The remaining parameters are those of :class:`MLPClassifier`. Early stopping and the
    halving schedule watch the validation R^2.

    Attributes
    ----------
    n_outputs_ (columns of y; 1 for 1-D y, whose predictions are 1-D), n_features_in_,
    n_iter_, loss_curve_ (mean quadratic cost per epoch), validation_scores_ (R^2 per
    epoch), validation_loss_curve_, best_validation_score_, learning_rate_curve_,
    gradient_norms_, network_, coefs_, intercepts_.
    """

    _kind = "mlp"
    _score_name = "r2"
    _parameter_constraints: dict = dict(_NetworkEstimator._common_constraints)
    _fitted_attributes = ("n_outputs_", *_NetworkEstimator._fitted_attributes)
    _target_attributes = ("n_outputs_", "n_features_in_")

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        *,
        activation: str = "sigmoid",
        learning_rate: float = 0.01,
        learning_rate_schedule: str = "constant",
        schedule_patience: int = 10,
        schedule_min_fraction: float = 1.0 / 128,
        l2: float = 0.0,
        l1: float = 0.0,
        dropout: float = 0.0,
        batch_size: int = 10,
        epochs: int = 100,
        momentum: float = 0.0,
        init: str = "scaled",
        early_stopping: bool = False,
        n_iter_no_change: int = 10,
        validation_fraction: float = 0.1,
        track_gradient_norms: bool = False,
        random_state=None,
        dtype: str = "float64",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
        self.schedule_patience = schedule_patience
        self.schedule_min_fraction = schedule_min_fraction
        self.l2 = l2
        self.l1 = l1
        self.dropout = dropout
        self.batch_size = batch_size
        self.epochs = epochs
        self.momentum = momentum
        self.init = init
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.validation_fraction = validation_fraction
        self.track_gradient_norms = track_gradient_norms
        self.random_state = random_state
        self.dtype = dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _output_activation_name(self) -> str:
        return "identity"

    def _cost_name(self) -> str:
        return "quadratic"

    def _validate_Xy(self, X, y, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(
            self, X, y, reset=reset, dtype=[np.float64, np.float32], y_numeric=True,
            multi_output=True,
        )  # fmt: skip
        return _as_network_dtype(X, self.dtype, "X"), y

    def _start_targets(self, y: np.ndarray, classes) -> None:
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]

    def _check_same_targets(self, y: np.ndarray, classes) -> None:
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if n_outputs != self.n_outputs_:
            raise ValueError(
                f"y has {n_outputs} outputs; the first call to partial_fit had {self.n_outputs_}"
            )

    def _n_outputs(self) -> int:
        return self.n_outputs_

    def _targets(self, y, what: str = "y") -> np.ndarray:
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"{what} must hold numbers; got {y.dtype}")
        Y = _as_network_dtype(y.reshape(len(y), -1), self.dtype, what)
        if Y.shape[1] != self.n_outputs_:
            raise ValueError(f"{what} has {Y.shape[1]} outputs; the model has {self.n_outputs_}")
        if not np.isfinite(Y).all():
            raise ValueError(f"{what} contains NaN or infinity")
        return Y

    _MIN_VALIDATION_SAMPLES = 2  # R^2 is undefined on one sample

    def _score_outputs(self, A: np.ndarray, Y: np.ndarray) -> float:
        if not np.isfinite(A).all():
            return -np.inf
        return float(r2_score(Y.astype(np.float64), A.astype(np.float64)))

    def _restore_targets(self, state: Mapping[str, Any]) -> None:
        n_outputs = _whole_number(state["n_outputs"], "n_outputs", state)
        if n_outputs < 1:
            raise ValueError(f"n_outputs: {n_outputs} must be >= 1")
        self.n_outputs_ = n_outputs

    def partial_fit(
        self,
        X,
        y,
        *,
        validation_data: tuple | None = None,
        callbacks: Sequence[EpochCallback] = (),
    ):
        """One epoch of SGD over (X, y), continuing from the current weights."""
        return self._partial_fit(X, y, None, validation_data, callbacks)

    def predict(self, X) -> np.ndarray:
        """The output activations, shape (n_samples,) for 1-D targets, else
        (n_samples, n_outputs); float64."""
        a = self._predict_outputs(X)
        return a[:, 0] if self.n_outputs_ == 1 else a


def trusted_types() -> list[str]:
    """Fully qualified names of every class a fitted estimator of this module can hold.

    The estimators, :class:`Network`, :class:`Regularizer`, and every activation, cost and
    layer class (found as subclasses of their bases, so a new layer is listed without an
    edit here): what an MLflow model in skops format may contain (``skops_trusted_types``).
    """

    def subclasses(base: type) -> list[type]:
        found = []
        for cls in base.__subclasses__():
            found += [cls, *subclasses(cls)]
        return found

    classes = [
        *(cls for cls in subclasses(_NetworkEstimator) if not cls.__name__.startswith("_")),
        Network,
        Regularizer,
        *subclasses(Activation),
        *subclasses(Cost),
        *subclasses(Layer),
    ]
    return sorted({f"{cls.__module__}.{cls.__qualname__}" for cls in classes})
