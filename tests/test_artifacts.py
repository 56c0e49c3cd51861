"""Model files (.npz + JSON, no pickle) and atomic writes."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits

from pipeline import CNNClassifier, MLPClassifier
from pipeline.artifacts import (
    ArtifactError,
    atomic_path,
    file_checksum,
    load_arrays,
    load_model,
    save_model,
    write_json,
)


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32)[:400], y[:400]


@pytest.mark.parametrize(
    "estimator",
    [
        MLPClassifier(hidden_layer_sizes=(20, 10), epochs=2, early_stopping=True, random_state=0),
        CNNClassifier(conv_layers=((3, 3, 2),), epochs=1, random_state=0),
        MLPClassifier(epochs=1, dtype="float64", random_state=0),
    ],
)
def test_model_round_trip_predicts_identically(estimator, data, tmp_path):
    X, y = data
    labels = np.array([f"digit-{d}" for d in y])
    estimator.fit(X, labels)
    npz = save_model(estimator, tmp_path / "model")
    assert npz == tmp_path / "model.npz" and (tmp_path / "model.json").is_file()
    loaded = load_model(tmp_path / "model")
    assert type(loaded) is type(estimator)
    assert loaded.get_params() == estimator.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), estimator.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), estimator.predict(X))
    assert loaded.loss_curve_ == estimator.loss_curve_
    assert loaded.n_iter_ == estimator.n_iter_


def test_model_file_holds_no_pickle(data, tmp_path):
    X, y = data
    save_model(MLPClassifier(epochs=1, random_state=0).fit(X, y), tmp_path / "m")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    json.loads((tmp_path / "m.json").read_text())


def test_pickle_disguised_as_npz_is_refused_not_executed(data, tmp_path):
    X, y = data
    save_model(MLPClassifier(epochs=1, random_state=0).fit(X, y), tmp_path / "m")
    marker = tmp_path / "executed"

    class Exploit:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    (tmp_path / "m.npz").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ArtifactError, match="m.npz"):
        load_model(tmp_path / "m")
    assert not marker.exists()


def test_object_array_in_npz_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ArtifactError, match="pickled"):
        load_arrays(tmp_path / "x.npz")


def test_tampered_model_files_are_refused(data, tmp_path):
    X, y = data
    save_model(MLPClassifier(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(X, y),
               tmp_path / "m")  # fmt: skip
    meta = json.loads((tmp_path / "m.json").read_text())

    wrong_shape = dict(meta, params=dict(meta["params"], hidden_layer_sizes=[9]))
    (tmp_path / "m.json").write_text(json.dumps(wrong_shape))
    with pytest.raises(ArtifactError, match="shape"):
        load_model(tmp_path / "m")

    (tmp_path / "m.json").write_text(json.dumps(dict(meta, estimator="os.system")))
    with pytest.raises(ArtifactError, match="estimator"):
        load_model(tmp_path / "m")

    (tmp_path / "m.json").write_text(json.dumps(dict(meta, params={"learning_rate": -1})))
    with pytest.raises(ArtifactError, match="learning_rate"):
        load_model(tmp_path / "m")

    (tmp_path / "m.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "m.npz") as npz:
        arrays = dict(npz)
    np.savez(tmp_path / "m.npz", **arrays, extra=np.zeros(3))
    with pytest.raises(ArtifactError, match="checksum"):  # weights changed alone
        load_model(tmp_path / "m")
    resigned = dict(meta, weights_sha256=file_checksum(tmp_path / "m.npz"))
    (tmp_path / "m.json").write_text(json.dumps(resigned))
    with pytest.raises(ArtifactError, match="parameter names"):  # and both changed
        load_model(tmp_path / "m")

    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_model(tmp_path / "m")


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match="nothing.json: file not found"):
        load_model(tmp_path / "nothing")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
