"""Model files (.npz + JSON, no pickle) and atomic writes."""

from __future__ import annotations

import io
import json
import pickle
import tracemalloc
import warnings
import zipfile

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
    read_mapping,
    save_model,
    write_json,
)
from pipeline.io import npz_headers


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32)[:400], y[:400]


@pytest.mark.parametrize(
    "estimator",
    [
        MLPClassifier(hidden_layer_sizes=(20, 10), epochs=2, early_stopping=True, random_state=0),
        CNNClassifier(conv_layers=((3, 3, 2),), epochs=1, random_state=0),
        CNNClassifier(conv_layers=((3, 3, 2),), epochs=1, random_state=0, predict_flips=True),
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


def test_column_names_survive_the_model_files(data, tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = data
    frame = pd.DataFrame(X[:, :6], columns=[f"px{i}" for i in range(6)])
    model = MLPClassifier(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(frame, y)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.feature_names_in_.tolist() == [f"px{i}" for i in range(6)]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame[frame.columns[::-1]])

    meta = json.loads((tmp_path / "m.json").read_text())
    for names in (["px0"], [0, 1, 2, 3, 4, 5], "px0"):
        (tmp_path / "m.json").write_text(json.dumps(dict(meta, feature_names_in=names)))
        with pytest.raises(ArtifactError, match="feature_names_in: expected 6 column names"):
            load_model(tmp_path / "m")

    plain = MLPClassifier(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(X, y)
    save_model(plain, tmp_path / "plain")
    assert "feature_names_in" not in json.loads((tmp_path / "plain.json").read_text())
    assert not hasattr(load_model(tmp_path / "plain"), "feature_names_in_")


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


# --- model files are checked before memory is allocated (issue 12, class 3) ----------------
def npz_bytes(**members: bytes) -> bytes:
    """An .npz (zip) holding these raw members, as np.savez would name them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zipped(arrays: dict, compression: int = zipfile.ZIP_STORED, duplicate: str = "") -> bytes:
    """An .npz of ``arrays`` written with this zip compression, one member written twice."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression) as archive:
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of the duplicate name
        for name in [*arrays, *([duplicate] if duplicate else [])]:
            archive.writestr(f"{name}.npy", npy_bytes(arrays[name]))
    return buffer.getvalue()


def npy_bytes(array: np.ndarray, shape: tuple[int, ...] | None = None, descr: str = "") -> bytes:
    """The NPY bytes of ``array``, with a header declaring ``shape`` and ``descr`` if given."""
    buffer = io.BytesIO()
    header = {
        "descr": descr or array.dtype.str,
        "fortran_order": False,
        "shape": shape or array.shape,
    }
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + array.tobytes()


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """A small saved MLP: (description, weights as a dict, the .npz bytes)."""
    X, y = data
    path = tmp_path_factory.mktemp("saved") / "m"
    save_model(MLPClassifier(hidden_layer_sizes=(8,), epochs=1, random_state=0).fit(X, y), path)
    with np.load(path.with_suffix(".npz")) as npz:
        arrays = dict(npz)
    return json.loads(path.with_suffix(".json").read_text()), arrays


def write_tampered(tmp_path, meta, weights: bytes | dict) -> None:
    """Write model files, the description signed with the weights' checksum (a careful forger)."""
    if isinstance(weights, dict):
        np.savez(tmp_path / "m.npz", **weights)
    else:
        (tmp_path / "m.npz").write_bytes(weights)
    if isinstance(meta, dict) and isinstance(meta.get("weights_sha256"), str):
        meta = dict(meta, weights_sha256=file_checksum(tmp_path / "m.npz"))
    (tmp_path / "m.json").write_text(json.dumps(meta))


def _params(meta, **changes):
    return dict(meta, params=dict(meta["params"], **changes))


W0 = np.zeros((64, 8), np.float32)
TAMPERED = {
    # description: sizes the weights do not have (the 4e8 hidden layer must not allocate)
    "hidden-4e8": (lambda m, w: (_params(m, hidden_layer_sizes=[400_000_000]), w),
                   r"m\.npz: weights do not fit .*'0\.W' has shape \(64, 8\), "
                   r"expected \(64, 400000000\)"),
    "hidden-deep": (lambda m, w: (_params(m, hidden_layer_sizes=[10**9] * 50), w),
                    r"parameter names differ"),
    "n_features-huge": (lambda m, w: (dict(m, n_features_in=10**12), w),
                        r"'0\.W' has shape \(64, 8\), expected \(1000000000000, 8\)"),
    "n_features-zero": (lambda m, w: (dict(m, n_features_in=0), w), r"n_features_in: 0 must be"),
    "n_features-float": (lambda m, w: (dict(m, n_features_in=64.5), w), r"not a whole number"),
    "classes-many": (lambda m, w: (dict(m, classes=list(range(100_000))), w),
                     r"'1\.W' has shape \(8, 10\), expected \(8, 100000\)"),
    "classes-one": (lambda m, w: (dict(m, classes=[0]), w), r"classes: \[0\] is not a list of 2"),
    "classes-repeated": (lambda m, w: (dict(m, classes=[0, 1, 2, 3, 4, 5, 6, 7, 8, 8]), w),
                         r"classes: \[0, 1, .*8, 8\] are not distinct labels"),
    "classes-dtype-changes-them": (lambda m, w: (dict(m, classes_dtype="<U1"), w),
                                   r"are not distinct labels of type dtype\('<U1'\)"),
    "classes-dtype-date": (lambda m, w: (dict(m, classes_dtype="<M8[ns]"), w),
                             r"classes_dtype.*not a label type"),
    "classes-dtype-bad": (lambda m, w: (dict(m, classes_dtype="no-such"), w),
                          r"invalid model description|weights do not fit"),
    "n_iter-negative": (lambda m, w: (dict(m, n_iter=-1), w), r"n_iter: -1 must be >= 0"),
    "loss_curve-string": (lambda m, w: (dict(m, loss_curve="abc"), w),
                          r"loss_curve: abc is not a list"),
    "missing-n_features": (lambda m, w: ({k: v for k, v in m.items() if k != "n_features_in"}, w),
                           r"missing or unknown field 'n_features_in'"),
    "unknown-param": (lambda m, w: (_params(m, shell="rm -rf"), w), r"invalid model description"),
    # not a model description at all
    "params-null": (lambda m, w: (dict(m, params=None), w),
                    r"m\.json: not a model file \('params' is None, not a dict\)"),
    "params-list": (lambda m, w: (dict(m, params=[1, 2]), w), r"not a model file \('params'"),
    "no-estimator": (lambda m, w: ({k: v for k, v in m.items() if k != "estimator"}, w),
                     r"not a model file \(no 'estimator'\)"),
    "estimator-number": (lambda m, w: (dict(m, estimator=5), w), r"not a model file \('estimator'"),
    "version-bool": (lambda m, w: (dict(m, format_version=True), w),
                     r"not a model file \('format_version'"),
    "description-list": (lambda m, w: ([m], w), r"m\.json: not a model file \(holds a list\)"),
    "description-null": (lambda m, w: (None, w), r"not a model file \(holds a NoneType\)"),
    "checksum-number": (lambda m, w: ({**m, "weights_sha256": 5}, w),
                        r"not a model file \(weights_sha256 is 5\)"),
    # weights: members that are not valid NPY arrays, or claim more than they hold
    "member-not-npy": (lambda m, w: (m, npz_bytes(**{"0.W.npy": b"hello", "0.b.npy": b"x"})),
                       r"m\.npz: member '0\.W' is not a valid NPY array"),
    "member-not-npy-name": (lambda m, w: (m, npz_bytes(**{"0.W": npy_bytes(W0)})),
                            r"member '0\.W' is not an NPY array"),
    "member-shape-lie": (lambda m, w: (m, npz_bytes(**{"0.W.npy": npy_bytes(W0, (64, 4 * 10**8))})),
                         r"member '0\.W' declares shape \(64, 400000000\) .* but holds 2048 bytes"),
    "member-object": (lambda m, w: (m, npz_bytes(**{"0.W.npy": npy_bytes(W0, descr="|O")})),
                      r"refused, holds pickled objects"),
    "member-int": (lambda m, w: (m, {**w, "0.W": W0.astype(np.int32)}),
                   r"'0\.W' is int32, not float"),
    "member-nan": (lambda m, w: (m, {**w, "0.W": np.full_like(W0, np.nan)}),
                   r"'0\.W' is not finite"),
    "member-missing": (lambda m, w: (m, {k: v for k, v in w.items() if k != "1.b"}),
                       r"parameter names differ"),
    "npz-truncated": (lambda m, w: (m, b"PK\x03\x04" + b"\0" * 20),
                      r"m\.npz: not a valid \.npz file"),
    "npz-empty": (lambda m, w: (m, b""), r"m\.npz: not a valid \.npz file"),
    "member-compressed": (lambda m, w: (m, zipped(w, zipfile.ZIP_DEFLATED)),
                          r"member '0\.W' is compressed"),
    "member-twice": (lambda m, w: (m, zipped(w, duplicate="0.W")), r"member '0\.W' appears twice"),
}  # fmt: skip


@pytest.mark.parametrize("case", TAMPERED, ids=str)
def test_tampered_model_is_refused_before_allocating(case, saved, tmp_path):
    meta, arrays = saved
    meta, weights = TAMPERED[case][0](meta, arrays)
    write_tampered(tmp_path, meta, weights)
    tracemalloc.start()
    try:
        with pytest.raises(ArtifactError, match=TAMPERED[case][1]):
            load_model(tmp_path / "m")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB allocated before refusing"


def test_saved_model_keeps_a_numpy_integer_random_state(data, tmp_path):
    X, y = data
    clf = MLPClassifier(epochs=1, random_state=np.int64(3)).fit(X, y)
    save_model(clf, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.random_state == 3 and type(loaded.random_state) is int
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_a_failed_load_leaves_no_half_built_estimator(saved, tmp_path):
    """_set_state refuses before building and leaves the estimator unfitted."""
    meta, arrays = saved
    clf = MLPClassifier(hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="shape"):
        clf._set_state(dict(meta, n_features_in=63), arrays)
    assert not clf.__sklearn_is_fitted__() and not hasattr(clf, "classes_")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"conv_layers": [[10**6, 3, 2]]}, r"'0\.W' has shape \(3, 3, 1, 2\), "
                                           r"expected \(3, 3, 1, 1000000\)"),
        ({"conv_layers": [[2, 3, 2]] * 40}, r"does not fit"),
        ({"image_shape": [10**6, 10**6]}, r"image_shape=.* does not match 64 features"),
        ({"hidden_layer_sizes": [10**8]}, r"'3\.W' has shape \(18, 4\), "
                                          r"expected \(18, 100000000\)"),
    ],
)  # fmt: skip
def test_tampered_cnn_description_is_refused(changes, match, data, tmp_path):
    X, y = data
    cnn = CNNClassifier(conv_layers=((2, 3, 2),), hidden_layer_sizes=(4,), epochs=1, random_state=0)
    save_model(cnn.fit(X, y), tmp_path / "m")
    meta = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps(_params(meta, **changes)))
    with pytest.raises(ArtifactError, match=match):
        load_model(tmp_path / "m")


# --- pipeline.io: readers with one-line errors -----------------------------------------------
@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("p.yaml", "a: [1, 2\n", r"p\.yaml: not valid YAML at line 2"),
        ("p.yaml", "- 1\n- 2\n", r"p\.yaml: expected a mapping of names to values, got a list"),
        ("p.yaml", "", r"p\.yaml: expected a mapping .* got nothing"),
        ("p.yaml", "!!python/object:os.system {}\n", r"p\.yaml: not valid YAML"),
        ("p.json", "[1]", r"p\.json: expected a mapping .* got a list"),
        ("p.json", "{1: 2", r"p\.json: not valid JSON"),
        ("p.yaml", "\udcff", r"p\.yaml: not valid YAML"),
    ],
)
def test_read_mapping_errors_name_the_file(name, text, match, tmp_path):
    (tmp_path / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ArtifactError, match=match) as info:
        read_mapping(tmp_path / name)
    assert "\n" not in str(info.value)


def test_read_mapping_reads_yaml_and_json(tmp_path):
    (tmp_path / "a.yaml").write_text("eta: 0.5\nsizes: [30, 10]\n")
    write_json(tmp_path / "b.json", {"eta": np.float32(0.5), "sizes": (30, 10)})
    assert read_mapping(tmp_path / "a.yaml") == read_mapping(tmp_path / "b.json")


def test_npz_headers_read_shapes_without_the_data(tmp_path):
    np.savez(tmp_path / "a.npz", w=np.zeros((3, 4), np.float32), b=np.arange(5))
    headers = npz_headers(tmp_path / "a.npz")
    assert {k: (h.shape, h.dtype.str) for k, h in headers.items()} == {
        "w": ((3, 4), "<f4"),
        "b": ((5,), "<i8"),
    }
    np.testing.assert_array_equal(np.asarray(headers["b"]), np.arange(5))


def test_check_writable_probes_without_touching_outputs(tmp_path):
    from pipeline.io import check_writable

    existing = tmp_path / "out" / "model.npz"
    existing.parent.mkdir()
    existing.write_bytes(b"previous")
    check_writable(existing, tmp_path / "new" / "deep" / "report.md")
    assert existing.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "model.npz", "new", "out"]
    blocked = tmp_path / "a-file"  # a directory cannot be made where a file is, even by root
    blocked.write_text("x")
    with pytest.raises(OSError, match=f"cannot write {blocked / 'x.json'}: a file stands where"):
        check_writable(blocked / "x.json")
    with pytest.raises(OSError, match=f"cannot write {blocked / 'y' / 'x.json'}: a file stands"):
        check_writable(blocked / "y" / "x.json")
    (tmp_path / "out" / "model.json").mkdir()  # the atomic rename onto it would fail at the end
    with pytest.raises(IsADirectoryError, match="model.json: it is a directory"):
        check_writable(existing, tmp_path / "out" / "model.json")


def test_a_text_file_named_npz_is_not_called_a_pickle(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("hello")
    with pytest.raises(ArtifactError, match=r"x.npz: not a valid .npz file \(not a zip archive\)"):
        load_arrays(path)
