"""Model files written before the issue-6 optimisations load and predict the same.

The fixtures in ``data/`` were written by ``pipeline.artifacts.save_model`` at commit
59e9bb8 (before the work buffers, the conv bias column and the pool-before-activation
changes): parameter names ("0.W", "0.b", ...) and layouts (conv kernel (k, k, C, F)) are
unchanged, so they must load and give the same probabilities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import load_model

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_models_saved_before_the_optimisations_predict_the_same(kind):
    expected = np.load(DATA / "predictions_before_issue6.npz")
    model = load_model(DATA / f"{kind}_before_issue6")
    np.testing.assert_allclose(
        model.predict_proba(expected["X"]), expected[kind], rtol=1e-5, atol=1e-7
    )
    assert (model.predict(expected["X"]) == model.classes_[expected[kind].argmax(axis=1)]).all()
