"""scikit-learn's own estimator checks over the estimators, default-constructed.

The MLP classifier and the MLP regressor pass every check. The CNN's default network
starts with a 5x5 convolution, so it needs square images of at least 5x5 pixels; the checks
below feed X with 1, 2, 3, 4, 5 or 10 features, which is no such image, and the CNN refuses
it with a ValueError that names the problem. Those checks, and only those, are expected
failures.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline import CNNClassifier, MLPClassifier, MLPRegressor

_NOT_AN_IMAGE = "X has {} features: not a square image a 5x5 convolution fits"

CNN_EXPECTED_FAILURES = {
    check: _NOT_AN_IMAGE.format(n)
    for n, checks in {
        "2": [
            "check_estimators_overwrite_params",
            "check_dont_overwrite_parameters",
            "check_estimators_fit_returns_self",
            "check_readonly_memmap_input",
            "check_classifier_data_not_an_array",
            "check_classifiers_classes",
            "check_classifiers_train",
            "check_classifiers_train(readonly_memmap=True)",
            "check_classifiers_train(readonly_memmap=True,X_dtype=float32)",
            "check_fit_check_is_fitted",
            "check_n_features_in",
            "check_fit2d_predict1d",
        ],
        "3": [
            "check_fit_score_takes_y",
            "check_pipeline_consistency",
            "check_estimators_nan_inf",
            "check_estimators_pickle",
            "check_estimators_pickle(readonly_memmap=True)",
            "check_f_contiguous_array_estimator",
            "check_estimators_partial_fit_n_features",
            "check_supervised_y_2d",
            "check_methods_sample_order_invariance",
            "check_methods_subset_invariance",
            "check_dict_unchanged",
            "check_fit_idempotent",
        ],
        "4 (a 2x2 image)": [
            "check_n_features_in_after_fitting",
            "check_positive_only_tag_during_fit",
        ],
        "1": ["check_fit2d_1feature"],
        "5": ["check_estimators_dtypes"],
        "10": ["check_dtype_object"],
    }.items()
    for check in checks
}


def _expected_failures(estimator) -> dict[str, str]:
    return CNN_EXPECTED_FAILURES if isinstance(estimator, CNNClassifier) else {}


@parametrize_with_checks(
    [MLPClassifier(), CNNClassifier(), MLPRegressor()], expected_failed_checks=_expected_failures
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
