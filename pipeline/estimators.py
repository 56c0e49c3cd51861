"""scikit-learn estimators over the NumPy networks of :mod:`pipeline.nn`.

:class:`MLPClassifier` is the book's fully connected network (chapters 1-3),
:class:`CNNClassifier` its convolutional network (chapter 6). Both train with mini-batch SGD,
monitor a validation set every epoch when they have one, and report each epoch to callbacks,
which is how tracking and the hyper-parameter search watch (and stop) training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
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
from pipeline.nn.activations import HIDDEN_ACTIVATIONS, row_sum
from pipeline.nn.initializers import INITS


class DivergenceError(ArithmeticError):
    """Training produced a NaN or infinite loss (eta too large, usually)."""


@dataclass(frozen=True)
class EpochInfo:
    """What a callback sees after every epoch.

    ``validation_accuracy`` and ``validation_loss`` are None when training has no
    validation set; ``gradient_norms`` is None unless ``track_gradient_norms=True``.
    """

    epoch: int
    train_loss: float
    validation_accuracy: float | None
    validation_loss: float | None
    learning_rate: float
    gradient_norms: dict[str, float] | None = field(default=None)

    def metrics(self) -> dict[str, float | None]:
        """The epoch's figures under flat names (``val_accuracy``, ``grad_norm_layer0``)."""
        figures = {
            "train_loss": self.train_loss,
            "val_loss": self.validation_loss,
            "val_accuracy": self.validation_accuracy,
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


def _whole_number(value, name: str, context) -> int:
    """``value`` as an int if it is a whole number (not a bool); else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, Real) or not float(value).is_integer():
        raise ValueError(f"{name}: {value!r} in {context!r} is not a whole number")
    return int(value)


class _NetworkClassifier(ClassifierMixin, BaseEstimator):
    """Training, prediction and validation shared by the MLP and the CNN.

    Subclasses define ``_build_layers`` and list every parameter in their ``__init__``.
    """

    _kind = "mlp"
    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
        "output_activation": [StrOptions({"auto", "sigmoid", "softmax"})],
        "cost": [StrOptions({"quadratic", "cross_entropy", "log_likelihood"})],
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

    # --- construction ----------------------------------------------------------------------
    def _output_activation_name(self) -> str:
        if self.output_activation != "auto":
            return self.output_activation
        return "softmax" if self.cost == "log_likelihood" else "sigmoid"

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        if any(not isinstance(s, Integral) or isinstance(s, bool) or s < 1 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be positive integers; got {self.hidden_layer_sizes!r}"
            )
        return [int(s) for s in sizes]

    def _build_layers(self, n_features: int, n_outputs: int, rng) -> list[Layer]:
        raise NotImplementedError

    def _dense_stack(self, n_in: int, n_outputs: int, rng) -> list[Layer]:
        """Hidden Dense layers (each followed by dropout if any) and the output layer."""
        dtype = np.dtype(self.dtype)
        layers: list[Layer] = []
        for size in self._hidden_sizes():
            layers.append(Dense(n_in, size, get_activation(self.activation), rng, self.init, dtype))
            if self.dropout > 0:
                layers.append(Dropout(self.dropout, rng))
            n_in = size
        output = get_activation(self._output_activation_name())
        layers.append(Dense(n_in, n_outputs, output, rng, self.init, dtype))
        return layers

    def _initialize(self, n_features: int, classes: np.ndarray) -> None:
        """Fresh network and learned state for ``n_features`` inputs and these classes."""
        self.classes_ = classes
        self.n_features_in_ = n_features
        self._rng = _generator(self.random_state)
        layers = self._build_layers(n_features, len(classes), self._rng)
        self.network_ = Network(layers, get_cost(self.cost), Regularizer(self.l2, self.l1))
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

    # --- input checks ----------------------------------------------------------------------
    def _validate_X(self, X, reset: bool) -> np.ndarray:
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        return np.ascontiguousarray(X, dtype=self.dtype)

    def _validate_Xy(self, X, y, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        return np.ascontiguousarray(X, dtype=self.dtype), y

    def _encode(self, y: np.ndarray, what: str = "y") -> np.ndarray:
        """Class indices 0..K-1 of labels y; an unseen label is an error."""
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        unknown = self.classes_[idx] != y
        if np.any(unknown):
            raise ValueError(
                f"{what} contains labels not among the classes {self.classes_.tolist()}: "
                f"{np.unique(np.asarray(y)[unknown]).tolist()[:10]}"
            )
        return idx

    def _one_hot(self, idx: np.ndarray) -> np.ndarray:
        return np.eye(len(self.classes_), dtype=self.dtype)[idx]

    def _validation_set(self, validation_data, reset: bool):
        if validation_data is None:
            return None
        try:
            X_val, y_val = validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (X_val, y_val)") from None
        X_val = self._validate_X(X_val, reset=False)
        y_val = np.asarray(y_val)
        if y_val.ndim != 1 or len(y_val) != len(X_val):
            raise ValueError(
                f"validation_data: y_val must be 1-D with {len(X_val)} labels; "
                f"got shape {y_val.shape}"
            )
        return self._network_input(X_val), self._one_hot(self._encode(y_val, "y_val"))

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
        y : array-like of shape (n_samples,), any labels
        validation_data : (X_val, y_val), optional
            Held-out data scored every epoch. Without it, ``early_stopping`` and the halving
            schedule split ``validation_fraction`` of (X, y) off, stratified.
        callbacks : callables taking an :class:`EpochInfo`; one returning True stops training.
        """
        self._check_integer_params()
        X, y = self._validate_Xy(X, y, reset=True)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(
                f"y has only 1 class {classes.tolist()}; a classifier needs at least 2 classes"
            )
        self._initialize(X.shape[1], classes)
        try:
            idx = self._encode(y)
            validation = self._validation_set(validation_data, reset=False)
            needs_validation = self.early_stopping or self.learning_rate_schedule == "halving"
            if validation is None and needs_validation:
                X, idx, validation = self._split_validation(X, idx)
        except BaseException:
            self._forget_fit()  # bad input must not leave an untrained model "fitted"
            raise
        # From here on the state is real: a callback that stops training by raising (say,
        # a pruned trial) leaves the epochs trained so far in n_iter_ and the curves.
        self._train(X, idx, self.epochs, validation, callbacks, use_schedule=True)
        return self

    def _forget_fit(self) -> None:
        """Remove the learned state, so that the estimator is unfitted again."""
        for name in list(vars(self)):
            if name.endswith("_") and not name.startswith("__") or name in ("_rng",):
                delattr(self, name)

    # Integer parameters: sklearn's Integral constraint lets True and False through.
    _INTEGER_PARAMS = ("batch_size", "epochs", "n_iter_no_change", "schedule_patience")

    def _check_integer_params(self) -> None:
        for name in self._INTEGER_PARAMS:
            if isinstance(getattr(self, name), bool):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be an int in the "
                    f"range [1, inf). Got {getattr(self, name)!r} instead."
                )

    def _split_validation(self, X: np.ndarray, idx: np.ndarray):
        n_val = math.ceil(self.validation_fraction * len(X))
        if n_val < 1 or len(X) - n_val < 1:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves no training or no "
                f"validation samples out of {len(X)}"
            )
        counts = np.bincount(idx)
        stratify = idx if counts[counts > 0].min() >= 2 and n_val >= len(counts) else None
        seed = int(self._rng.integers(2**31 - 1))
        X_tr, X_val, i_tr, i_val = train_test_split(
            X, idx, test_size=n_val, stratify=stratify, random_state=seed
        )
        return X_tr, i_tr, (self._network_input(X_val), self._one_hot(i_val))

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
        first_call = not hasattr(self, "classes_")
        if first_call:
            self._validate_params()
            self._check_integer_params()
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = self._validate_Xy(X, y, reset=first_call)
        if first_call:
            all_classes = np.unique(np.asarray(classes))
            if len(all_classes) < 2:
                raise ValueError(f"classes={all_classes.tolist()}: need at least 2 classes")
            self._initialize(X.shape[1], all_classes)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.unique(classes).tolist()} differs from the classes of the first "
                f"call {self.classes_.tolist()}"
            )
        validation = self._validation_set(validation_data, reset=False)
        self._train(X, self._encode(y), 1, validation, callbacks, use_schedule=False)
        return self

    def _train(
        self,
        X: np.ndarray,
        idx: np.ndarray,
        epochs: int,
        validation: tuple[np.ndarray, np.ndarray] | None,
        callbacks: Sequence[EpochCallback],
        use_schedule: bool,
    ) -> None:
        """The SGD loop: shuffle once per epoch, step through mini-batches, then score."""
        net = self.network_
        n = len(X)
        Y = self._one_hot(idx)
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
        try:
            for _ in range(epochs):
                order = self._rng.permutation(n)  # shuffle by index, once per epoch
                Y_epoch = Y[order]  # the (small) one-hot targets in training order
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
                if not math.isfinite(loss):
                    raise DivergenceError(
                        f"training diverged: loss is {loss} in epoch {self.n_iter_ + 1} "
                        f"(learning_rate={schedule.eta:g}); try a smaller learning_rate"
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
                if any([bool(callback(info)) for callback in callbacks]):
                    stop = True
                if stop:
                    break
        finally:
            # Work buffers and the last batch's caches are memory, not model: free them.
            net.release_buffers()
        if best_state is not None:
            net.set_state(best_state)

    def _epoch_info(self, X, Y, n, validation, eta: float) -> EpochInfo:
        """Score the epoch: validation accuracy and loss, gradient norms if asked."""
        val_acc = val_loss = norms = None
        if validation is not None:
            X_val, Y_val = validation
            proba = self._forward_chunked(X_val)
            val_acc = float(np.mean(proba.argmax(axis=1) == Y_val.argmax(axis=1)))
            val_loss = self.network_.cost.fn(proba, Y_val) + self.network_.regularizer.penalty(
                self.network_.weights, n
            )
            self.validation_scores_.append(val_acc)
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
            validation_accuracy=val_acc,
            validation_loss=val_loss,
            learning_rate=eta,
            gradient_norms=norms,
        )

    # --- prediction ------------------------------------------------------------------------
    def _forward_chunked(self, X_net: np.ndarray) -> np.ndarray:
        chunk = _PREDICT_CHUNK[self._kind]
        with np.errstate(over="ignore", invalid="ignore"):
            parts = [
                self.network_.forward(X_net[i : i + chunk]) for i in range(0, len(X_net), chunk)
            ]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes_)))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), rows summing to 1.

        Softmax outputs are probabilities already; sigmoid outputs are normalised per row.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        a = self._forward_chunked(self._network_input(X)).astype(np.float64)
        # Sigmoid outputs need normalising; softmax outputs computed in float32 need it too,
        # to sum to 1 in float64.
        a /= np.maximum(row_sum(a), np.finfo(np.float64).tiny)
        return a

    def predict(self, X) -> np.ndarray:
        """The label of the most active output neuron, shape (n_samples,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

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

    def _build_layers(self, n_features: int, n_outputs: int, rng) -> list[Layer]:
        return self._dense_stack(n_features, n_outputs, rng)


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

    The remaining parameters are those of :class:`MLPClassifier`; ``dropout`` applies to the
    fully connected hidden layers, as in the book's network3.py.
    """

    _kind = "cnn"
    _parameter_constraints: dict = {
        **_NetworkClassifier._parameter_constraints,
        "conv_layers": ["array-like"],
        "image_shape": ["array-like", None],
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
    ) -> None:
        self.conv_layers = conv_layers
        self.image_shape = image_shape
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

    def _build_layers(self, n_features: int, n_outputs: int, rng) -> list[Layer]:
        shape = self._resolve_image_shape(n_features)
        self._input_shape = shape
        dtype = np.dtype(self.dtype)
        layers: list[Layer] = []
        for filters, kernel, pool in self._conv_specs():
            h, w, c = shape
            if kernel > h or kernel > w:
                raise ValueError(
                    f"conv_layers: a {kernel}x{kernel} kernel does not fit the {h}x{w} "
                    f"feature map (image_shape {self._input_shape[:2]})"
                )
            conv = Conv2D(
                c, filters, kernel, get_activation(self.activation), rng, self.init, dtype
            )
            layers.append(conv)
            shape = conv.output_shape(shape)
            if pool > 1:
                if pool > shape[0] or pool > shape[1]:
                    raise ValueError(
                        f"conv_layers: a {pool}x{pool} pool does not fit the "
                        f"{shape[0]}x{shape[1]} feature map"
                    )
                layers.append(MaxPool2D(pool))
                shape = layers[-1].output_shape(shape)
        layers.append(Flatten())
        return layers + self._dense_stack(math.prod(shape), n_outputs, rng)

    def _network_input(self, X: np.ndarray) -> np.ndarray:
        return X.reshape((len(X), *self._input_shape))
