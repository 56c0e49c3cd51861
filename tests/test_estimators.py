"""The estimators: learning, parameters, bad input, epoch hooks, sklearn composition, and
the regressor (chapter 4)."""

from __future__ import annotations

import importlib
import pickle
import re

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils._param_validation import InvalidParameterError

from pipeline import CNNClassifier, DivergenceError, EpochInfo, MLPClassifier, MLPRegressor
from pipeline.artifacts import load_model, save_model
from pipeline.estimators import trusted_types


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


# --- learning ------------------------------------------------------------------------------
def test_mlp_learns_digits(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = MLPClassifier(hidden_layer_sizes=(100,), learning_rate=0.5, epochs=30, random_state=0)
    assert clf.fit(X_tr, y_tr).score(X_te, y_te) >= 0.96


def test_cnn_learns_digits(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = CNNClassifier(
        conv_layers=((20, 3, 2),), learning_rate=0.05, epochs=20, batch_size=10, random_state=0
    )
    assert clf.fit(X_tr, y_tr).score(X_te, y_te) >= 0.97


@pytest.mark.parametrize(
    "params",
    [
        {"cost": "quadratic", "learning_rate": 3.0},  # chapter 1
        {"cost": "log_likelihood", "activation": "relu", "learning_rate": 0.1},
        {"activation": "tanh", "learning_rate": 0.1, "momentum": 0.5, "l2": 1.0},
        {"dropout": 0.2, "l1": 0.1},
        {"dtype": "float64"},
    ],
)
def test_mlp_variants_learn(params, digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = MLPClassifier(hidden_layer_sizes=(50,), epochs=15, random_state=0, **params)
    assert clf.fit(X_tr, y_tr).score(X_te, y_te) >= 0.93


def test_cross_entropy_learns_faster_than_quadratic_from_saturated_start(digits):
    """Chapter 3: with N(0,1) weights the quadratic cost learns slowly; cross-entropy does not."""
    X_tr, X_te, y_tr, y_te = digits
    common = dict(hidden_layer_sizes=(30,), init="large", epochs=2, random_state=1)
    quad = MLPClassifier(cost="quadratic", learning_rate=0.5, **common).fit(X_tr, y_tr)
    xent = MLPClassifier(cost="cross_entropy", learning_rate=0.5, **common).fit(X_tr, y_tr)
    assert xent.score(X_te, y_te) > quad.score(X_te, y_te) + 0.05


def test_float32_by_default_and_float64_on_request(digits):
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(epochs=1, random_state=0).fit(X_tr, y_tr)
    assert all(w.dtype == np.float32 for w in clf.coefs_)
    clf64 = MLPClassifier(epochs=1, random_state=0, dtype="float64").fit(X_tr, y_tr)
    assert all(w.dtype == np.float64 for w in clf64.coefs_)


def test_float32_and_float64_learning_curves_agree(digits):
    X_tr, _, y_tr, _ = digits
    a = MLPClassifier(epochs=5, random_state=0).fit(X_tr, y_tr)
    b = MLPClassifier(epochs=5, random_state=0, dtype="float64").fit(X_tr, y_tr)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-3)


# --- labels, attributes, determinism ---------------------------------------------------------
def test_arbitrary_labels(digits):
    X_tr, X_te, y_tr, y_te = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "7", "8", "9"])
    clf = MLPClassifier(epochs=10, random_state=0).fit(X_tr, names[y_tr])
    assert set(clf.predict(X_te)) <= set(names)
    assert clf.score(X_te, names[y_te]) >= 0.9
    shifted = MLPClassifier(epochs=3, random_state=0).fit(X_tr, y_tr + 100)
    assert list(shifted.classes_) == list(range(100, 110))


def test_learned_attributes(digits):
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(epochs=4, early_stopping=True, random_state=0).fit(X_tr, y_tr)
    assert clf.n_features_in_ == 64 and clf.n_iter_ == 4
    assert len(clf.loss_curve_) == len(clf.validation_scores_) == 4
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert [w.shape for w in clf.coefs_] == [(64, 100), (100, 10)]
    proba = clf.predict_proba(X_tr[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_same_seed_same_predictions_bit_for_bit(digits):
    X_tr, X_te, y_tr, _ = digits
    make = lambda: MLPClassifier(epochs=3, dropout=0.2, random_state=7)  # noqa: E731
    np.testing.assert_array_equal(
        make().fit(X_tr, y_tr).predict_proba(X_te), make().fit(X_tr, y_tr).predict_proba(X_te)
    )
    cnn = lambda: CNNClassifier(conv_layers=((4, 3, 2),), epochs=1, random_state=3)  # noqa: E731
    np.testing.assert_array_equal(
        cnn().fit(X_tr, y_tr).predict_proba(X_te), cnn().fit(X_tr, y_tr).predict_proba(X_te)
    )


def test_cnn_image_shape_with_channels():
    rng = np.random.default_rng(0)
    X = rng.random((40, 6 * 5 * 2))
    y = rng.integers(0, 2, size=40)
    clf = CNNClassifier(conv_layers=((3, 3, 2),), image_shape=(6, 5, 2), epochs=2).fit(X, y)
    assert clf.predict(X).shape == (40,)
    with pytest.raises(ValueError, match="image_shape"):
        CNNClassifier(image_shape=(7, 5)).fit(X, y)


def test_predict_flips_averages_each_image_and_its_mirror(digits):
    X_tr, X_te, y_tr, y_te = digits
    mirrored = X_te.reshape(-1, 8, 8)[:, :, ::-1].reshape(len(X_te), -1)
    clf = CNNClassifier(conv_layers=((6, 3, 2),), epochs=3, random_state=0).fit(X_tr, y_tr)
    expected = (clf.predict_proba(X_te) + clf.predict_proba(mirrored)) / 2
    clf.set_params(predict_flips=True)
    np.testing.assert_allclose(clf.predict_proba(X_te), expected, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(X_te), clf.classes_[expected.argmax(axis=1)])
    # ... and the per-epoch validation scores (early stopping, the schedule, the search) too.
    flips = CNNClassifier(conv_layers=((6, 3, 2),), epochs=3, random_state=0, predict_flips=True)
    flips.fit(X_tr, y_tr, validation_data=(X_te, y_te))
    assert flips.validation_scores_[-1] == flips.score(X_te, y_te)


# --- training control --------------------------------------------------------------------------
def test_epoch_callback_sees_every_epoch_and_can_stop(digits):
    X_tr, X_te, y_tr, y_te = digits
    seen: list[EpochInfo] = []

    def watch(info: EpochInfo) -> bool:
        seen.append(info)
        return info.epoch == 3

    clf = MLPClassifier(epochs=10, random_state=0, track_gradient_norms=True)
    clf.fit(X_tr, y_tr, validation_data=(X_te, y_te), callbacks=[watch])
    assert [info.epoch for info in seen] == [1, 2, 3] and clf.n_iter_ == 3
    assert all(0 <= info.validation_accuracy <= 1 and info.validation_loss > 0 for info in seen)
    assert seen[-1].validation_accuracy == clf.validation_scores_[-1]
    assert seen[0].learning_rate == 0.5
    assert set(seen[0].gradient_norms) == {"dense1", "output"}
    assert len(clf.gradient_norms_) == 3


def test_no_validation_means_no_validation_scores(digits):
    X_tr, _, y_tr, _ = digits
    seen = []
    clf = MLPClassifier(epochs=2, random_state=0).fit(X_tr, y_tr, callbacks=[seen.append])
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert seen[0].validation_accuracy is None and seen[0].gradient_norms is None


def test_early_stopping_keeps_best_weights(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = MLPClassifier(
        epochs=200, learning_rate=2.0, early_stopping=True, n_iter_no_change=3, random_state=0
    ).fit(X_tr, y_tr, validation_data=(X_te, y_te))
    assert clf.n_iter_ < 200
    assert clf.score(X_te, y_te) == pytest.approx(clf.best_validation_score_)


def test_halving_schedule_halves_eta_and_stops(digits):
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(
        epochs=500,
        learning_rate=1.0,
        learning_rate_schedule="halving",
        schedule_patience=1,
        schedule_min_fraction=1 / 8,
        random_state=0,
    ).fit(X_tr, y_tr)
    etas = clf.learning_rate_curve_
    assert clf.n_iter_ < 500
    assert set(etas) <= {1.0, 0.5, 0.25, 0.125}
    assert etas == sorted(etas, reverse=True) and etas[-1] == 0.125


def test_divergence_raises_clear_error(digits):
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(
        activation="relu", cost="log_likelihood", learning_rate=1e30, epochs=5, random_state=0
    )
    with pytest.raises(DivergenceError, match="diverged.*epoch 1.*learning_rate=1e\\+30"):
        clf.fit(X_tr * 1e3, y_tr)


@pytest.mark.parametrize(
    ("make", "eta"),
    [
        (lambda eta: MLPClassifier((30,), learning_rate=eta, random_state=0), 100),
        (lambda eta: MLPClassifier((30,), activation="relu", learning_rate=eta, random_state=0),
         3000),
        (lambda eta: CNNClassifier(conv_layers=((6, 3, 2),), learning_rate=eta, random_state=0),
         1000),
    ],
    ids=["mlp-sigmoid", "mlp-relu", "cnn"],
)  # fmt: skip
def test_saturated_outputs_are_divergence_though_the_loss_stays_finite(digits, make, eta):
    """Too large an eta saturates the outputs; the costs' clipped logs keep the loss finite,
    and without the check training ended at chance with no word."""
    X_tr, _, y_tr, _ = digits
    with pytest.raises(DivergenceError, match=f"outputs saturated in epoch 1.*learning_rate={eta}"):
        make(eta).set_params(epochs=3).fit(X_tr, y_tr)
    make(0.1).set_params(epochs=3).fit(X_tr, y_tr)  # the same network at a sane eta


def test_random_labels_at_a_sane_eta_are_not_divergence():
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 36)), rng.integers(0, 2, size=40)  # nothing to learn
    for clf in (MLPClassifier((10,), learning_rate=3.0), CNNClassifier(conv_layers=((3, 3, 2),))):
        clf.set_params(epochs=20, random_state=0).fit(X, y)
        assert clf.n_iter_ == 20


def test_partial_fit_one_epoch_per_call(digits):
    X_tr, X_te, y_tr, y_te = digits
    clf = MLPClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X_tr, y_tr)
    for _ in range(5):
        clf.partial_fit(X_tr, y_tr, classes=np.arange(10))
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5
    assert clf.score(X_te, y_te) > 0.9
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X_tr[:3], [0, 1, 42])


# --- bad parameters and bad data ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("learning_rate", -0.1),
        ("learning_rate", 0),
        ("batch_size", 0),
        ("epochs", 0),
        ("activation", "swish"),
        ("cost", "hinge"),
        ("l2", -1.0),
        ("l1", -1.0),
        ("dropout", 1.0),
        ("momentum", 1.5),
        ("init", "zeros"),
        ("dtype", "float16"),
        ("validation_fraction", 0.0),
        ("n_iter_no_change", 0),
        ("learning_rate_schedule", "cosine"),
    ],
)
def test_bad_parameters_raise_naming_the_parameter(param, value, digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(InvalidParameterError, match=param):
        MLPClassifier(**{param: value}).fit(X_tr, y_tr)


@pytest.mark.parametrize("sizes", [(0,), (10, -1), ("ten",)])
def test_bad_hidden_layer_sizes(sizes, digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        MLPClassifier(hidden_layer_sizes=sizes).fit(X_tr, y_tr)


@pytest.mark.parametrize(
    ("conv_layers", "match"),
    [(((20, 9, 2),), "does not fit"), (((20, 3),), "conv_layers"), (((0, 3, 2),), ">= 1")],
)
def test_bad_conv_layers(conv_layers, match, digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(ValueError, match=match):
        CNNClassifier(conv_layers=conv_layers).fit(X_tr, y_tr)


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.array([[np.nan, 1.0], [1.0, 2.0]]), [0, 1], "NaN"),
        (np.array([[np.inf, 1.0], [1.0, 2.0]]), [0, 1], "infinity"),
        (np.array([1.0, 2.0, 3.0]), [0, 1, 0], "2D array"),
        (np.zeros((0, 3)), [], "0 sample"),
        (np.ones((3, 2)), [0, 1], "inconsistent numbers of samples"),
        (np.ones((4, 2)), [0.5, 1.5, 2.5, 3.5], "Unknown label type"),
        (np.ones((4, 2)), [1, 1, 1, 1], "1 class"),
    ],
)
def test_bad_training_data(X, y, match):
    with pytest.raises(ValueError, match=match):
        MLPClassifier(epochs=1).fit(X, y)


def test_predict_with_wrong_number_of_features_raises(digits):
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(epochs=1).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="64 features"):
        clf.predict(np.ones((2, 10)))


def test_bad_validation_data(digits):
    X_tr, X_te, y_tr, y_te = digits
    with pytest.raises(ValueError, match="validation_data"):
        MLPClassifier(epochs=1).fit(X_tr, y_tr, validation_data=X_te)
    with pytest.raises(ValueError, match="y_val"):
        MLPClassifier(epochs=1).fit(X_tr, y_tr, validation_data=(X_te, y_te[:-1]))


def test_an_early_stopping_split_that_leaves_nothing_to_learn_or_score_is_refused(digits):
    X_tr, _, y_tr, _ = digits
    with pytest.raises(ValueError, match="leaves 1 training sample.* all of one class"):
        MLPClassifier(early_stopping=True).fit(X_tr[:2], [0, 1])
    y_real = y_tr.astype(float)
    with pytest.raises(ValueError, match="leaves 1 training and 1 validation samples out of 2"):
        MLPRegressor(early_stopping=True).fit(X_tr[:2], y_real[:2])
    with pytest.raises(ValueError, match=r"validation_data: 1 sample\(s\); .* at least 2"):
        MLPRegressor(epochs=1).fit(X_tr[:20], y_real[:20], validation_data=(X_tr[:1], y_real[:1]))
    regressor = MLPRegressor(early_stopping=True, epochs=2, random_state=0).fit(
        X_tr[:20], y_real[:20]
    )
    assert np.isfinite(regressor.validation_scores_).all()  # 2 validation samples: R^2 defined


# --- sklearn composition --------------------------------------------------------------------------
def test_pipeline_gridsearch_cross_val_clone(digits):
    X_tr, _, y_tr, _ = digits
    pipe = make_pipeline(MinMaxScaler(), MLPClassifier(epochs=5, random_state=0))
    scores = cross_val_score(pipe, X_tr, y_tr, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85
    grid = GridSearchCV(
        pipe, {"mlpclassifier__learning_rate": [0.01, 0.5], "mlpclassifier__l2": [0.0, 1.0]}, cv=2
    ).fit(X_tr, y_tr)
    assert grid.best_params_["mlpclassifier__learning_rate"] == 0.5
    cloned = clone(grid.best_estimator_)
    assert cloned.get_params()["mlpclassifier__learning_rate"] == 0.5
    assert not hasattr(cloned[-1], "classes_")


def test_pipeline_passes_fit_params_to_the_estimator(digits):
    X_tr, X_te, y_tr, y_te = digits
    seen = []
    pipe = make_pipeline(MinMaxScaler(), MLPClassifier(epochs=2, random_state=0))
    pipe.fit(X_tr, y_tr, mlpclassifier__callbacks=[seen.append])
    assert len(seen) == 2


def test_pickle_round_trip(digits):
    X_tr, X_te, y_tr, _ = digits
    clf = CNNClassifier(conv_layers=((4, 3, 2),), epochs=1, random_state=0).fit(X_tr, y_tr)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X_te), clf.predict_proba(X_te))


def test_cnn_on_images_keeps_sklearn_invariances(digits):
    """The sklearn checks the CNN cannot run on non-image data, run here on 8x8 digits."""
    X_tr, X_te, y_tr, _ = digits
    clf = CNNClassifier(conv_layers=((4, 3, 2),), epochs=2, random_state=0).fit(X_tr, y_tr)
    full = clf.predict_proba(X_te)
    np.testing.assert_allclose(
        np.concatenate([clf.predict_proba(X_te[:7]), clf.predict_proba(X_te[7:])]), full,
        atol=1e-6,
    )  # fmt: skip
    order = np.random.default_rng(0).permutation(len(X_te))
    np.testing.assert_allclose(clf.predict_proba(X_te[order]), full[order], atol=1e-6)
    refit = clone(clf).fit(X_tr, y_tr)
    np.testing.assert_array_equal(refit.predict_proba(X_te), full)
    assert clf.n_features_in_ == 64
    with pytest.raises(ValueError, match="64 features"):
        clf.predict(X_te[:, :49])


# --- the regressor (chapter 4) --------------------------------------------------------------
def sine(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(-np.pi, np.pi, size=(n, 1))
    return x, np.sin(x[:, 0])


def test_regressor_learns_sine():
    """Universality: one hidden layer of sigmoid neurons approximates sin on [-pi, pi]."""
    X, y = sine()
    X_test, y_test = sine(200, seed=1)
    reg = MLPRegressor(hidden_layer_sizes=(20,), learning_rate=0.05, epochs=300, random_state=0)
    assert reg.fit(X, y).score(X_test, y_test) >= 0.95
    assert reg.predict(X_test).shape == (200,) and reg.predict(X_test).dtype == np.float64
    assert reg.loss_curve_[-1] < reg.loss_curve_[0] / 5


def test_regressor_network_gradient_matches_finite_differences():
    """BP1 with the identity output and the quadratic cost, delta^L = a^L - y, through the
    regressor's own network in float64, L2 penalty included."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    reg = MLPRegressor(hidden_layer_sizes=(4, 3), activation="tanh", l2=0.5, epochs=1,
                       random_state=0).fit(X, Y)  # fmt: skip
    net = reg.network_
    assert type(net.layers[-1].activation).__name__ == "Identity"
    assert net.cost.name == "quadratic" and net.layers[0].params["W"].dtype == np.float64
    net.backprop(X, Y, n=len(X))
    for name, value, grad in net.parameters():
        analytic = grad.copy()
        numeric = np.zeros_like(value)
        flat, nflat = value.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + 1e-6
            plus = net.loss(X, Y, len(X))
            flat[i] = old - 1e-6
            minus = net.loss(X, Y, len(X))
            flat[i] = old
            nflat[i] = (plus - minus) / 2e-6
        error = np.max(np.abs(analytic - numeric)) / max(
            1e-8, np.max(np.abs(analytic) + np.abs(numeric))
        )
        assert error < 1e-6, name


def test_regressor_multi_output_partial_fit_and_early_stopping():
    X, y = sine()
    Y = np.column_stack([y, np.cos(X[:, 0])])
    reg = MLPRegressor(hidden_layer_sizes=(20,), learning_rate=0.05, random_state=0)
    for _ in range(3):
        reg.partial_fit(X, Y)
    assert reg.n_iter_ == 3 and reg.n_outputs_ == 2 and reg.predict(X).shape == (400, 2)
    with pytest.raises(ValueError, match="1 outputs; the first call to partial_fit had 2"):
        reg.partial_fit(X, y)
    assert reg.n_iter_ == 3
    stopped = MLPRegressor(
        hidden_layer_sizes=(20,), learning_rate=0.05, epochs=500, early_stopping=True,
        n_iter_no_change=5, random_state=0,
    ).fit(X, y)  # fmt: skip
    assert stopped.n_iter_ < 500 and stopped.best_validation_score_ > 0.9
    seen = []
    MLPRegressor(epochs=2, random_state=0).fit(
        X, y, validation_data=(X, y), callbacks=[seen.append]
    )
    assert "val_r2" in seen[0].metrics() and seen[0].score_name == "r2"


@pytest.mark.parametrize("random_state", [3, np.int64(3)])
def test_regressor_saves_and_loads(random_state, tmp_path):
    X, y = sine(100)
    reg = MLPRegressor(hidden_layer_sizes=(8,), epochs=3, random_state=random_state).fit(X, y)
    save_model(reg, tmp_path / "reg")
    loaded = load_model(tmp_path / "reg")
    assert type(loaded) is MLPRegressor and loaded.get_params() == reg.get_params()
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.n_outputs_ == 1 and loaded.loss_curve_ == reg.loss_curve_


# --- a failed call leaves the estimator as it was (issue 12, class 4) -----------------------
def weights(estimator) -> list[np.ndarray]:
    return [value.copy() for _, value, _ in estimator.network_.parameters()]


def diverge(estimator, X, y):
    estimator.set_params(learning_rate=1e30, activation="relu", cost="log_likelihood")
    return estimator.partial_fit(X * 1e3, y)


FAILING_FIRST_CALLS = {
    "partial_fit-unknown-label": (
        lambda e, X, y: e.partial_fit(X, np.where(y == 9, 42, y), classes=np.arange(10)),
        ValueError,
    ),
    "partial_fit-bad-validation": (
        lambda e, X, y: e.partial_fit(X, y, classes=np.arange(10), validation_data=(X, y[:-1])),
        ValueError,
    ),
    "fit-diverges": (
        lambda e, X, y: e.set_params(learning_rate=1e30, activation="relu").fit(X * 1e3, y),
        DivergenceError,
    ),
    "partial_fit-diverges": (
        lambda e, X, y: e.set_params(
            learning_rate=1e30, activation="relu", cost="log_likelihood"
        ).partial_fit(X * 1e3, y, classes=np.arange(10)),
        DivergenceError,
    ),
    "fit-bad-validation": (
        lambda e, X, y: e.fit(X, y, validation_data=(X, y[:-1])),
        ValueError,
    ),
}


@pytest.mark.parametrize("case", FAILING_FIRST_CALLS, ids=str)
def test_failed_first_call_leaves_the_estimator_unfitted(case, digits):
    X_tr, X_te, y_tr, _ = digits
    call, error = FAILING_FIRST_CALLS[case]
    clf = MLPClassifier(epochs=2, random_state=0)
    with pytest.raises(error):
        call(clf, X_tr, y_tr)
    assert not clf.__sklearn_is_fitted__()
    assert not [name for name in vars(clf) if name.endswith("_") and name[0] != "_"]
    with pytest.raises(NotFittedError):
        clf.predict(X_te)


FAILING_LATER_CALLS = {
    "partial_fit-unknown-label": (
        lambda e, X, y: e.partial_fit(X, np.where(y == 9, 42, y)),
        ValueError,
    ),
    "partial_fit-diverges": (diverge, DivergenceError),
    "partial_fit-bad-validation": (
        lambda e, X, y: e.partial_fit(X, y, validation_data=(X[:, :3], y)),
        ValueError,
    ),
    "fit-wrong-features-diverges": (
        lambda e, X, y: e.set_params(learning_rate=1e30, activation="relu").fit(X[:, :10] * 1e3, y),
        DivergenceError,
    ),
    "fit-one-class": (lambda e, X, y: e.fit(X, np.zeros_like(y)), ValueError),
    "partial_fit-overflowing-X": (lambda e, X, y: e.partial_fit(X * 1e39, y), ValueError),
}


@pytest.mark.parametrize("case", FAILING_LATER_CALLS, ids=str)
def test_failed_later_call_leaves_the_fitted_estimator_as_it_was(case, digits):
    X_tr, X_te, y_tr, _ = digits
    call, error = FAILING_LATER_CALLS[case]
    clf = MLPClassifier(hidden_layer_sizes=(20,), epochs=2, random_state=0).fit(X_tr, y_tr)
    before = (weights(clf), clf.predict_proba(X_te), clf.n_iter_, list(clf.loss_curve_))
    params = clf.get_params()
    with pytest.raises(error):
        call(clf, X_tr.astype(np.float64), y_tr)
    clf.set_params(**params)
    after = (weights(clf), clf.predict_proba(X_te), clf.n_iter_, clf.loss_curve_)
    for old, new in zip(before[0], after[0], strict=True):
        np.testing.assert_array_equal(old, new)
    assert all(np.isfinite(w).all() for w in after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:] and clf.n_features_in_ == 64
    # and it trains on as if nothing had happened: same as a twin that never failed
    twin = MLPClassifier(hidden_layer_sizes=(20,), epochs=2, random_state=0).fit(X_tr, y_tr)
    np.testing.assert_array_equal(
        clf.partial_fit(X_tr, y_tr).predict_proba(X_te),
        twin.partial_fit(X_tr, y_tr).predict_proba(X_te),
    )


def test_a_callback_that_raises_keeps_the_epochs_trained(digits):
    """A deliberate stop (a pruned trial raises from its callback) is not a failure."""
    X_tr, _, y_tr, _ = digits

    def prune(info):
        if info.epoch == 2:
            raise KeyError("pruned")

    clf = MLPClassifier(epochs=5, random_state=0)
    with pytest.raises(KeyError, match="pruned"):
        clf.fit(X_tr, y_tr, callbacks=[prune])
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert np.isfinite(clf.predict_proba(X_tr)).all()


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh"])
@pytest.mark.parametrize("cost", ["cross_entropy", "log_likelihood"])
@pytest.mark.parametrize("value", [1e30, 1e37, -1e37, 3e38])
def test_predict_on_huge_finite_input_is_finite_or_a_clear_error(activation, cost, value, digits):
    """Never NaN probabilities (and so class 0 for every row) from inputs that overflow."""
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(30, 30), activation=activation, cost=cost,
                        epochs=1, random_state=0).fit(X_tr, y_tr)  # fmt: skip
    X = np.full((3, 64), value)
    try:
        proba = clf.predict_proba(X)
    except ValueError as err:
        assert re.search(r"^X: .*(overflow|every output neuron is 0).*far outside", str(err))
    else:
        assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize(
    "estimator", [MLPClassifier(epochs=1), MLPRegressor(epochs=1, dtype="float32")], ids=repr
)
def test_input_beyond_float32_is_a_clear_error(estimator, digits):
    X_tr, X_te, y_tr, _ = digits
    estimator.fit(X_tr, y_tr)
    huge = X_te.astype(np.float64)
    huge[1, 5] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"X has values up to 1e\+39, beyond the float32 range"):
        estimator.predict(huge)
    if isinstance(estimator, MLPRegressor):
        with pytest.raises(ValueError, match=r"y has values up to 1e\+39"):
            clone(estimator).fit(X_tr, np.full(len(X_tr), 1e39))


def test_float64_overflow_inside_the_network_is_a_clear_error(digits):
    X_tr, _, y_tr, _ = digits
    reg = MLPRegressor(
        hidden_layer_sizes=(5,), activation="identity", init="large", learning_rate=1e-3,
        epochs=1, random_state=0,
    ).fit(X_tr, y_tr / 10)  # fmt: skip
    assert np.isfinite(reg.predict(np.full((2, 64), 1e300))).all()
    with pytest.raises(ValueError, match=r"overflow \(float64\) for 2 of 3 rows \(first: row 1"):
        reg.predict(np.vstack([X_tr[0], np.full((2, 64), 1e308)]))


def test_trusted_types_name_every_class_a_fitted_estimator_holds(digits):
    """The skops trusted types, derived from the registries: every class of ours reachable
    from a fitted estimator is listed, and every name resolves to a class."""
    X_tr, _, y_tr, _ = digits
    names = set(trusted_types())
    for name in names:
        module, _, qualname = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), qualname), type)
    fitted = [
        MLPClassifier(dropout=0.2, epochs=1, random_state=0).fit(X_tr, y_tr),
        CNNClassifier(conv_layers=((2, 3, 2),), epochs=1, random_state=0).fit(X_tr, y_tr),
        MLPRegressor(epochs=1, random_state=0).fit(X_tr, y_tr),
    ]
    held: set[str] = set()

    def walk(obj) -> None:
        cls = type(obj)
        if cls.__module__.startswith("pipeline"):
            held.add(f"{cls.__module__}.{cls.__qualname__}")
        children = vars(obj).values() if hasattr(obj, "__dict__") else []
        if isinstance(obj, list | tuple):
            children = obj
        for child in children:
            walk(child)

    for estimator in fitted:
        walk(estimator)
    assert held <= names
    assert {
        "pipeline.estimators.MLPRegressor",
        "pipeline.nn.layers.Conv2D",
        "pipeline.nn.activations.Softmax",
        "pipeline.nn.costs.QuadraticCost",
    } <= names
