"""Bad input, table-driven: every surface a user touches, each bad value refused clearly.

One table, :data:`CASES`, tries bad inputs on every surface of the pipeline:

- ``input``: what an estimator is given (NaN, inf, empty, 1-D, sparse, object dtype, bad y);
- ``param``: every estimator parameter's invalid values (MLP and CNN);
- ``data``: data files a stage reads (IDX corruptions, permissions, a directory where a file
  should be, missing files, corrupt ``.npz`` splits), in-process and once on the command line;
- ``config``: Hydra configs and params files (unknown group options, wrong types, missing
  required values, unknown keys);
- ``space``: search spaces, samplers and pruners;
- ``model``: model files that were tampered with (wrong shapes, extra or missing arrays, a
  pickle disguised as ``.npz``, which must be refused and never executed).

Every case expects one exception type and a message naming the problem (the file, key or
parameter, and usually the value), then checks that nothing was left behind:

- a stage runs in a copy of a complete, valid pipeline run (prepare, augment, train and
  evaluate on digits): afterwards every earlier output is byte-for-byte unchanged and no
  file or directory was added (no partial output, no temporary files);
- an estimator whose ``fit`` failed is not left looking fitted; a fitted estimator that was
  asked to predict on bad input predicts as before;
- no pickle payload ran.

A case that the product gets wrong today is marked ``xfail(strict=True)`` with the reason
starting ``BUG:``; the mark goes when the product is fixed.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from pipeline import augment, evaluate, prepare, search, train
from pipeline.artifacts import ArtifactError, file_checksum, load_model, save_arrays
from pipeline.config import compose_config, load_params
from pipeline.data import DataError
from pipeline.data.idx import write_idx
from pipeline.errors import ConfigError
from pipeline.estimators import CNNClassifier, MLPClassifier
from tests.conftest import stage_overrides
from tests.data import IDX_NAMES, make_idx_dataset

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
STAGES: dict[str, Callable] = {
    "prepare": prepare.run,
    "augment": augment.run,
    "train": train.run,
    "evaluate": evaluate.run,
    "search": search.run,
}
# The fastest complete pipeline: digits, no augmentation, one epoch, no MLflow; a search of
# one one-epoch trial, ended after a second even when its trials keep failing.
FAST = (
    "data=digits",
    "augment=none",
    "model=mlp",
    "tracking=off",
    "train.use_search=false",
    "train.epochs=1",
    "search.workers=1",
    "search.n_trials=1",
    "search.epochs=1",
    "search.timeout=1",
    "search.max_train_samples=200",
)


def overrides(root: Path, *extra: str) -> list[str]:
    """Every output under ``root``, the FAST settings, then ``extra`` (which win)."""
    keys = {item.lstrip("+~").split("=")[0] for item in extra}
    base = [item for item in FAST if item.split("=")[0] not in keys]
    return stage_overrides(root, *base, f"search.storage=sqlite:///{root / 'optuna.db'}", *extra)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: directories by kind, files by their sha256."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            state[rel] = f"link -> {os.readlink(path)}"
        elif path.is_dir():
            state[rel] = "dir"
        elif path.is_file():
            try:
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            except PermissionError:
                state[rel] = f"unreadable, {path.stat().st_size} bytes"
        else:
            state[rel] = "special file"
    return state


class CommandFailed(Exception):
    """A stage's command line ended with a non-zero exit status."""

    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(f"exit status {returncode}\n{stderr.strip()}")


class Payload:
    """Unpickling this runs code: it writes ``marker``. A model file must never unpickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('executed')",))


@dataclass(frozen=True)
class Bad:
    """One bad input: ``act(env)`` must raise ``error`` with a message matching ``match``."""

    act: Callable[[Env], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str


def case(id: str, act, error, match: str, bug: str | None = None):
    """A row of the table; ``bug`` marks what the product gets wrong today."""
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(Bad(act, error, match), id=id, marks=marks)


# --- the environment every case runs in ---------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32)[:200], y[:200]


@pytest.fixture(scope="module")
def fitted(digits) -> MLPClassifier:
    return MLPClassifier(hidden_layer_sizes=(5,), epochs=1, random_state=0).fit(*digits)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A complete pipeline run (prepare, augment, train, evaluate) whose outputs every stage
    case starts from, so that "earlier outputs unchanged" is checked on real files."""
    root = tmp_path_factory.mktemp("template")
    cfg = compose_config(overrides(root))
    for stage in ("prepare", "augment", "train", "evaluate"):
        STAGES[stage](cfg)
    return root


class Env:
    """What a case acts on, and the checks that nothing was left behind."""

    def __init__(self, tmp: Path, template: Path, digits, fitted: MLPClassifier) -> None:
        self.tmp = tmp
        self.X, self.y = digits
        self.marker = tmp / "EXECUTED"
        self._template = template
        self._fitted = fitted
        self._root: Path | None = None
        self._before: dict[str, str] | None = None
        self._fresh: Any = None
        self._used: tuple[Any, np.ndarray] | None = None
        self._cleanup: list[Path] = []

    # estimators
    def fit(self, estimator, X, y, **kwargs):
        """Fit a new estimator; afterwards it must not look fitted."""
        self._fresh = estimator
        return estimator.fit(X, y, **kwargs)

    def partial_fit(self, estimator, X, y, **kwargs):
        self._fresh = estimator
        return estimator.partial_fit(X, y, **kwargs)

    def predict(self, X, estimator=None):
        """Predict with a copy of a fitted estimator; afterwards it must predict as before."""
        if estimator is None:
            estimator = copy.deepcopy(self._fitted)
            self._used = (estimator, estimator.predict_proba(self.X))
        else:
            self._fresh = estimator
        return estimator.predict(X)

    # stages
    @property
    def root(self) -> Path:
        """A copy of the template's outputs, made on first use."""
        if self._root is None:
            self._root = self.tmp / "root"
            shutil.copytree(self._template, self._root)
        return self._root

    def config(self, *extra: str):
        return compose_config(overrides(self.root, *extra))

    def watch(self) -> None:
        """From now on nothing under the root may change."""
        self._before = snapshot(self.root)

    def stage(self, name: str, *extra: str):
        cfg = self.config(*extra)
        self.watch()
        return STAGES[name](cfg)

    def command(self, name: str, *extra: str) -> None:
        """``python -m pipeline.<name> ...``; raises CommandFailed on a non-zero status."""
        args = overrides(self.root, *extra)
        self.watch()
        result = subprocess.run(
            [sys.executable, "-m", f"pipeline.{name}", *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise CommandFailed(result.returncode, result.stderr)

    # input files
    def idx(self, mutate: Callable[[dict[str, Path]], Any], shared: bool = False) -> Path:
        """A directory of four small IDX files (8x8 images, raw), then ``mutate(files)``.

        ``shared``: in a fresh directory that any user can enter (``tmp`` may be private).
        """
        if shared:
            directory = Path(tempfile.mkdtemp(prefix="nndl-bad-input-"))
            directory.chmod(0o755)
            self._cleanup.append(directory)
        else:
            directory = self.tmp / "raw"
        files = make_idx_dataset(directory, n_train=60, n_test=20, shape=(8, 8), gz=False)
        for path in files.values():
            path.chmod(0o644)
        mutate(files)
        return directory

    def model_bytes(self) -> bytes:
        """The template's trained ``model.npz``, as bytes."""
        return (self._template / "models" / "model.npz").read_bytes()

    def model_files(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and the JSON description of the template's trained model."""
        with np.load(self._template / "models" / "model.npz", allow_pickle=False) as npz:
            arrays = dict(npz)
        meta = json.loads((self._template / "models" / "model.json").read_text())
        return arrays, meta

    def tampered_model(self, arrays=None, meta=None, npz_bytes=None, json_text=None) -> Path:
        """A model (``model.npz`` + ``model.json``) in tmp: the template's, with changes."""
        good_arrays, good_meta = self.model_files()
        base = self.tmp / "tampered" / "model"
        base.parent.mkdir()
        if npz_bytes is None:
            np.savez(base.with_suffix(".npz"), **(good_arrays if arrays is None else arrays))
        else:
            base.with_suffix(".npz").write_bytes(npz_bytes)
        if json_text is None:
            # A consistent forgery: the description names the tampered weights' checksum, so
            # the checks behind the checksum are what must refuse it.
            description = dict(good_meta if meta is None else meta)
            if "weights_sha256" in description:
                description["weights_sha256"] = file_checksum(base.with_suffix(".npz"))
            json_text = json.dumps(description)
        base.with_suffix(".json").write_text(json_text)
        return base

    # the checks
    def assert_nothing_left(self) -> None:
        assert not self.marker.exists(), "a pickle payload was executed"
        if self._fresh is not None:
            with pytest.raises(NotFittedError):
                self._fresh.predict(self.X)
        if self._used is not None:
            estimator, before = self._used
            np.testing.assert_array_equal(estimator.predict_proba(self.X), before)
        if self._before is not None:
            after = snapshot(self.root)
            added = sorted(set(after) - set(self._before))
            removed = sorted(set(self._before) - set(after))
            changed = sorted(k for k in self._before if k in after and after[k] != self._before[k])
            assert (added, removed, changed) == ([], [], []), "outputs were left or changed"

    def close(self) -> None:
        for directory in self._cleanup:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def env(tmp_path, template, digits, fitted):
    environment = Env(tmp_path, template, digits, fitted)
    yield environment
    environment.close()


# --- input: what an estimator is given -------------------------------------------------------
def mlp(**params) -> MLPClassifier:
    return MLPClassifier(**{"hidden_layer_sizes": (5,), "epochs": 1, "random_state": 0, **params})


def cnn(**params) -> CNNClassifier:
    defaults = {"conv_layers": ((2, 3, 2),), "hidden_layer_sizes": (5,), "epochs": 1}
    return CNNClassifier(**{**defaults, "random_state": 0, **params})


def with_value(X: np.ndarray, value: Any) -> np.ndarray:
    X = X.astype(object) if isinstance(value, str) else X.copy()
    X[3, 4] = value
    return X


INPUTS = [
    case("input:X-nan", lambda e: e.fit(mlp(), with_value(e.X, np.nan), e.y),
         ValueError, r"Input X contains NaN"),
    case("input:X-inf", lambda e: e.fit(mlp(), with_value(e.X, np.inf), e.y),
         ValueError, r"Input X contains infinity"),
    case("input:X-empty", lambda e: e.fit(mlp(), e.X[:0], e.y[:0]),
         ValueError, r"0 sample\(s\) \(shape=\(0, 64\)\) while a minimum of 1 is required"),
    case("input:X-1d", lambda e: e.fit(mlp(), e.X[0], e.y[:64]),
         ValueError, r"Expected 2D array, got 1D array instead"),
    case("input:X-3d", lambda e: e.fit(mlp(), e.X.reshape(-1, 8, 8), e.y),
         ValueError, r"Found array with dim 3"),
    case("input:X-sparse-fit", lambda e: e.fit(mlp(), scipy.sparse.csr_matrix(e.X), e.y),
         TypeError, r"Sparse data was passed for X, but dense data is required"),
    case("input:X-sparse-predict", lambda e: e.predict(scipy.sparse.csr_matrix(e.X)),
         TypeError, r"Sparse data was passed for X, but dense data is required"),
    case("input:X-object-strings", lambda e: e.fit(mlp(), with_value(e.X, "seven"), e.y),
         ValueError, r"could not convert string to float: 'seven'"),
    case("input:X-complex", lambda e: e.fit(mlp(), e.X.astype(complex), e.y),
         ValueError, r"Complex data not supported"),
    case("input:y-nan", lambda e: e.fit(mlp(), e.X, np.where(np.arange(200) == 3, np.nan, e.y)),
         ValueError, r"Input y contains NaN"),
    case("input:y-continuous", lambda e: e.fit(mlp(), e.X, e.y + 0.5),
         ValueError, r"Unknown label type: continuous"),
    case("input:y-one-hot", lambda e: e.fit(mlp(), e.X, np.eye(10)[e.y]),
         ValueError, r"y should be a 1d array, got an array of shape \(200, 10\)"),
    case("input:y-single-class", lambda e: e.fit(mlp(), e.X, np.full(200, 7)),
         ValueError, r"y has only 1 class \[7\]; a classifier needs at least 2 classes"),
    case("input:y-missing", lambda e: e.fit(mlp(), e.X, None),
         ValueError, r"requires y to be passed, but the target y is None"),
    case("input:X-y-length", lambda e: e.fit(mlp(), e.X, e.y[:-1]),
         ValueError, r"inconsistent numbers of samples: \[200, 199\]"),
    case("input:predict-feature-count", lambda e: e.predict(e.X[:, :10]),
         ValueError, r"X has 10 features, but MLPClassifier is expecting 64 features"),
    case("input:predict-nan", lambda e: e.predict(with_value(e.X, np.nan)),
         ValueError, r"Input X contains NaN"),
    case("input:predict-unfitted", lambda e: e.predict(e.X, estimator=mlp()),
         NotFittedError, r"This MLPClassifier instance is not fitted yet"),
    case("input:partial_fit-no-classes", lambda e: e.partial_fit(mlp(), e.X, e.y),
         ValueError, r"classes must be passed on the first call to partial_fit"),
    case("input:cnn-not-square", lambda e: e.fit(cnn(), e.X[:, :60], e.y),
         ValueError, r"60 features are not a square image; pass image_shape"),
    case("input:validation_data-nan",
         lambda e: e.fit(mlp(), e.X, e.y, validation_data=(with_value(e.X, np.nan), e.y)),
         ValueError, r"Input X contains NaN"),
    case("input:validation_data-unknown-label",
         lambda e: e.fit(mlp(), e.X, e.y, validation_data=(e.X, e.y + 20)),
         ValueError, r"y_val contains labels not among the classes .*: \[20, 21"),
]  # fmt: skip


# --- param: every estimator parameter's invalid values ---------------------------------------
def invalid(cls: str, name: str, value: Any) -> str:
    """sklearn's InvalidParameterError message for ``name=value``."""
    return rf"The '{name}' parameter of {cls} must be .* Got {re.escape(repr(value))} instead"


def param(name: str, value: Any, error=InvalidParameterError, match=None, bug=None, **extra):
    """``MLPClassifier(name=value).fit(...)`` must fail naming the parameter."""
    return case(
        f"param:{name}={value!r}",
        lambda e: e.fit(mlp(**{name: value, **extra}), e.X, e.y),
        error,
        match or invalid("MLPClassifier", name, value),
        bug,
    )


def cnn_param(name: str, value: Any, error=ValueError, match=None, bug=None):
    return case(
        f"param:cnn-{name}={value!r}",
        lambda e: e.fit(cnn(**{name: value}), e.X, e.y),
        error,
        match or invalid("CNNClassifier", name, value),
        bug,
    )


BOOL_AS_INT = "bool is an Integral, so sklearn's Interval(Integral, 1, None) accepts it"
PARAMS = [
    param("learning_rate", 0),
    param("learning_rate", -0.1),
    param("learning_rate", float("nan")),
    param("learning_rate", float("inf")),
    param("learning_rate", "0.1"),
    param("batch_size", 0),
    param("batch_size", 2.5),
    param("batch_size", True),
    param("epochs", 0),
    param("epochs", True),
    param("activation", "softplus"),
    param("output_activation", "relu"),
    param("cost", "hinge"),
    param("l2", -1.0),
    param("l2", float("nan")),
    param("l1", -0.1),
    param("dropout", 1.0),
    param("dropout", -0.1),
    param("momentum", 1.0),
    param("init", "zeros"),
    param("validation_fraction", 0),
    param("validation_fraction", 1),
    param("validation_fraction", 0.999, error=ValueError, early_stopping=True,
          match=r"validation_fraction=0.999 leaves 0 training and 200 validation samples out "
                r"of 200"),
    param("n_iter_no_change", 0),
    param("learning_rate_schedule", "cosine"),
    param("schedule_patience", 0),
    param("schedule_min_fraction", 0),
    param("schedule_min_fraction", 1),
    param("dtype", "float16"),
    param("random_state", "x"),
    param("random_state", -1),
    param("early_stopping", "yes"),
    param("track_gradient_norms", 1),
    param("hidden_layer_sizes", (0,), error=ValueError,
          match=r"hidden_layer_sizes must be positive integers; got \(0,\)"),
    param("hidden_layer_sizes", (2.5,), error=ValueError,
          match=r"hidden_layer_sizes must be positive integers; got \(2.5,\)"),
    param("hidden_layer_sizes", 0),
    param("hidden_layer_sizes", "abc"),
    cnn_param("conv_layers", ((3, 3),),
              match=r"conv_layers entries must be \(filters, kernel_size, pool_size\); "
                    r"got \(3, 3\)"),
    cnn_param("conv_layers", ((0, 3, 2),),
              match=r"conv_layers entry \(0, 3, 2\): all values must be >= 1"),
    cnn_param("conv_layers", ((2, 9, 1),),
              match=r"conv_layers: a 9x9 kernel does not fit the 8x8 feature map"),
    cnn_param("conv_layers", ((2, 3, 7),),
              match=r"conv_layers: a 7x7 pool does not fit the 6x6 feature map"),
    cnn_param("conv_layers", "abc", error=InvalidParameterError),
    cnn_param("conv_layers", ((2, 2.5, 2),), match=r"conv_layers.*2\.5"),
    cnn_param("image_shape", (8, 7),
              match=r"image_shape=\(8, 7\) does not match 64 features"),
    cnn_param("image_shape", (8, 8, 0),
              match=r"image_shape=\(8, 8, 0\) does not match 64 features"),
    cnn_param("image_shape", "8x8", error=InvalidParameterError),
    cnn_param("image_shape", (8.5, 8), match=r"image_shape.*8\.5"),
]  # fmt: skip


# --- data: files a stage reads ------------------------------------------------------------------
def flip_magic(files):
    raw = bytearray(files["train_images"].read_bytes())
    raw[2] = 0x42  # type code 0x42: no IDX type
    files["train_images"].write_bytes(bytes(raw))


def cut(role: str, keep: int | None = None, drop: int = 0):
    def mutate(files):
        raw = files[role].read_bytes()
        files[role].write_bytes(raw[:keep] if keep is not None else raw[: len(raw) - drop])

    return mutate


def replace(role: str, array: np.ndarray):
    return lambda files: write_idx(files[role], array)


def make_directory(role: str):
    def mutate(files):
        files[role].unlink()
        files[role].mkdir()

    return mutate


def prepare_idx(mutate, shared: bool = False):
    """``prepare data=idx data.path=DIR`` on the four files after ``mutate``."""
    return lambda e: e.stage("prepare", "data=idx", f"data.path={e.idx(mutate, shared)}")


def unreadable_idx(e: Env):
    """prepare on a training-images file its user may not read (chmod 000).

    root reads any file, so as root the stage runs as the user nobody (effective uid only,
    restored afterwards) over a directory that nobody may enter."""
    directory = e.idx(lambda files: files["train_images"].chmod(0), shared=True)
    cfg = e.config("data=idx", f"data.path={directory}")
    e.watch()
    if os.geteuid() != 0:
        return prepare.run(cfg)
    try:
        os.seteuid(NOBODY)
    except PermissionError:
        pytest.skip("root without CAP_SETUID: root reads a chmod 000 file, nothing to refuse")
    try:
        return prepare.run(cfg)
    finally:
        os.seteuid(0)


def write_split(relative: str, stage: str, **arrays):
    """Replace a split the pipeline wrote with ``arrays``, then run ``stage``."""

    def act(e: Env):
        save_arrays(e.root / "data" / relative, **arrays)
        return e.stage(stage)

    return act


def remove(relative: str, stage: str):
    def act(e: Env):
        (e.root / relative).unlink()
        return e.stage(stage)

    return act


TRAIN_IMAGES = IDX_NAMES["train_images"]
DATA = [
    case("data:idx-magic", prepare_idx(flip_magic), DataError,
         rf"{TRAIN_IMAGES}: not an IDX file: magic number 0x00004203"),
    case("data:idx-truncated", prepare_idx(cut("test_images", drop=7)), DataError,
         r"t10k-images-idx3-ubyte: truncated: dimensions \(20, 8, 8\) need 1296 bytes, "
         r"found 1289"),
    case("data:idx-truncated-header", prepare_idx(cut("test_images", keep=6)), DataError,
         r"t10k-images-idx3-ubyte: truncated IDX header \(6 of 16 bytes\)"),
    case("data:idx-empty-file", prepare_idx(cut("train_labels", keep=0)), DataError,
         r"train-labels-idx1-ubyte: too short for an IDX header \(0 bytes\)"),
    case("data:idx-trailing-bytes",
         prepare_idx(lambda f: f["train_labels"].write_bytes(f["train_labels"].read_bytes()
                                                             + b"\0\0")),
         DataError, r"train-labels-idx1-ubyte: 2 unexpected bytes after the 68"),
    case("data:idx-corrupt-gzip",
         prepare_idx(lambda f: f["train_labels"].write_bytes(gzip.compress(b"x" * 99)[:20])),
         DataError, r"train-labels-idx1-ubyte: corrupt or truncated gzip data"),
    case("data:idx-count-mismatch", prepare_idx(replace("train_labels", np.zeros(59, "u1"))),
         DataError, rf"{TRAIN_IMAGES} holds 60 images but \S*train-labels-idx1-ubyte holds "
                    r"59 labels"),
    case("data:idx-labels-out-of-range",
         prepare_idx(replace("test_labels", np.full(20, 10, "u1"))),
         DataError, r"t10k-labels-idx1-ubyte: 20 labels outside 0\.\.9 \(e\.g\. \[10\]\)"),
    case("data:idx-negative-labels",
         prepare_idx(replace("train_labels", np.full(60, -1, ">i4"))),
         DataError, r"train-labels-idx1-ubyte: 60 labels outside 0\.\.9 \(e\.g\. \[-1\]\)"),
    case("data:idx-float-pixels",
         prepare_idx(replace("train_images", np.zeros((60, 8, 8), ">f4"))),
         DataError, rf"{TRAIN_IMAGES}: expected unsigned-byte pixels, got float32"),
    case("data:idx-2d-images", prepare_idx(replace("train_images", np.zeros((60, 64), "u1"))),
         DataError, rf"{TRAIN_IMAGES}: expected 3-dimensional IDX images, got shape \(60, 64\)"),
    case("data:idx-test-image-shape",
         prepare_idx(replace("test_images", np.zeros((20, 7, 8), "u1"))),
         DataError, r"t10k-images-idx3-ubyte: images of shape \(7, 8\), but "
                    rf"\S*{TRAIN_IMAGES} has \(8, 8\)"),
    case("data:idx-no-images",
         prepare_idx(lambda f: (replace("test_images", np.zeros((0, 8, 8), "u1"))(f),
                                replace("test_labels", np.zeros(0, "u1"))(f))),
         DataError, r"t10k-images-idx3-ubyte: holds no images"),
    case("data:idx-missing-file", prepare_idx(lambda f: f["test_labels"].unlink()),
         DataError, r"raw: missing t10k-labels-idx1-ubyte \(gzipped or not\) given as data.path"),
    case("data:idx-directory-for-file", prepare_idx(make_directory("train_images")),
         DataError, rf"{TRAIN_IMAGES}: (is a directory|not a (regular )?file)"),
    case("data:idx-unreadable", unreadable_idx, (PermissionError, DataError),
         rf"Permission denied: '\S*{TRAIN_IMAGES}'|{TRAIN_IMAGES}: .*[Pp]ermission denied"),
    case("data:path-is-a-file",
         lambda e: e.stage("prepare", "data=idx", f"data.path={ROOT / 'pyproject.toml'}"),
         DataError, r"pyproject.toml: data.path is not a directory"),
    case("data:path-missing",
         lambda e: e.stage("prepare", "data=idx", f"data.path={e.tmp / 'nowhere'}"),
         DataError, r"nowhere: data.path is not a directory"),
    case("data:cli-idx-magic",
         lambda e: e.command("prepare", "data=idx", f"data.path={e.idx(flip_magic)}"),
         CommandFailed,
         rf"^exit status 1\nerror: \S*{TRAIN_IMAGES}: not an IDX file: magic number "
         r"0x00004203[^\n]*$"),
    case("data:split-nan-pixels",
         write_split("augmented/train.npz", "train", X=np.full((4, 8, 8), np.nan, np.float32),
                     y=np.arange(4)),
         ArtifactError, r"augmented/train.npz: X must lie in \[0, 1\]"),
    case("data:split-float64-pixels",
         write_split("augmented/train.npz", "train", X=np.zeros((4, 8, 8)), y=np.arange(4)),
         ArtifactError, r"augmented/train.npz: X must be float32 \(n, h, w\), got float64"),
    case("data:split-missing-y",
         write_split("prepared/train.npz", "augment", X=np.zeros((4, 8, 8), np.float32)),
         ArtifactError, r"prepared/train.npz: missing arrays \['y'\]; has \['X'\]"),
    case("data:split-missing", remove("data/prepared/val.npz", "train"), ArtifactError,
         r"prepared/val.npz: file not found; run `python -m pipeline.prepare` first"),
    case("data:meta-missing", remove("data/prepared/meta.json", "train"), ArtifactError,
         r"prepared/meta.json: file not found"),
]  # fmt: skip


# --- config: Hydra groups and values, params files --------------------------------------------
def stage(name: str, *extra: str):
    return lambda e: e.stage(name, *extra)


def best_params(text: str):
    """train with ``train.use_search=true`` and ``text`` as the search's result."""

    def act(e: Env):
        cfg = e.config("train.use_search=true")
        Path(cfg.paths.best_params).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.paths.best_params).write_text(text)
        e.watch()
        return train.run(cfg)

    return act


def params_file(text: str | bytes | None):
    """``load_params`` on a file holding ``text`` (None: no file at all)."""

    def act(e: Env):
        path = e.tmp / "params.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        elif text is not None:
            path.write_text(text)
        return load_params(path)

    return act


EVERY_TRIAL_FAILS = (
    "every trial fails inside study.optimize (catch=Exception) and FAIL does not count "
    "against search.n_trials, so the worker starts failing trials until search.timeout "
    "(forever without one), after creating the study storage"
)
CONFIGS = [
    case("config:compose-data=nope", lambda e: e.config("data=nope"),
         ConfigError, r"Could not find 'data/nope'"),
    case("config:cli-data=nope", lambda e: e.command("prepare", "data=nope"), CommandFailed,
         r"^exit status 2\nconfig error: [^\n]*Could not find 'data/nope'[^\n]*Available "
         r"options in 'data'[^\n]*$"),
    case("config:cli-train.epochs=nan", lambda e: e.command("train", "train.epochs=nan"),
         CommandFailed, r"^exit status 2\nconfig error: train\.epochs: expected an integer "
                        r"\(got nan\)$"),
    case("config:train.batch_size=ten", stage("train", "train.batch_size=ten"),
         ConfigError, r"^train\.batch_size: expected an integer \(got 'ten'\)"),
    case("config:train.batch_size=true", stage("train", "train.batch_size=true"),
         (InvalidParameterError, ConfigError), r"batch_size.*True"),
    case("config:train.epochs=0", stage("train", "train.epochs=0"),
         ConfigError, r"^train\.epochs: must be >= 1 \(got 0\)"),
    case("config:train.learning_rate=nan", stage("train", "train.learning_rate=nan"),
         ConfigError, r"^train\.learning_rate: must be a finite number \(got nan\)"),
    case("config:train.early_stopping=maybe", stage("train", "train.early_stopping=maybe"),
         ConfigError, r"^train\.early_stopping: expected true or false \(got 'maybe'\)"),
    case("config:model.activation=softplus", stage("train", "model.activation=softplus"),
         ConfigError, r"^model\.activation: must be one of \[sigmoid, tanh, relu, identity\] "
                      r"\(got 'softplus'\)"),
    case("config:model.hidden_layer_sizes=[0]", stage("train", "model.hidden_layer_sizes=[0]"),
         ConfigError, r"^model\.hidden_layer_sizes: must be >= 1 \(got \[0\]\)"),
    case("config:train.threads=abc", stage("train", "train.threads=abc"), ConfigError,
         r"train\.threads.*'abc'"),
    case("config:seed=abc-train", stage("train", "seed=abc"), ConfigError,
         r"seed: .*'abc'"),
    case("config:seed=abc-prepare", stage("prepare", "seed=abc"), ConfigError,
         r"^seed: expected an integer \(got 'abc'\)"),
    case("config:search.epochs=abc", stage("search", "search.epochs=abc"), ConfigError,
         r"search\.epochs.*'abc'"),
    case("config:search.n_trials=abc", stage("search", "search.n_trials=abc"), ConfigError,
         r"search\.n_trials.*'abc'"),
    case("config:search.workers=0", stage("search", "search.workers=0"), ConfigError,
         r"^search\.workers: must be >= 1 \(got 0\)"),
    case("config:augment.transforms.shifts.pixels=-1",
         stage("augment", "augment=shifts", "augment.transforms.shifts.pixels=-1"),
         ConfigError, r"^augment\.transforms\.shifts\.pixels: must be >= 1 \(got -1\)"),
    case("config:augment.transforms.rotations.max_angle=nan",
         stage("augment", "augment=rotations", "augment.transforms.rotations.max_angle=nan"),
         ConfigError, r"^augment\.transforms\.rotations\.max_angle: must be a finite number"),
    case("config:augment.shuffle=maybe", stage("augment", "augment.shuffle=maybe"),
         ConfigError, r"^augment\.shuffle: expected true or false \(got 'maybe'\)"),
    case("config:data.split.train=abc", stage("prepare", "data.split.train=abc"),
         ConfigError, r"^data\.split\.train: expected a number \(got 'abc'\)"),
    case("config:missing-data.path", stage("prepare", "data=idx"), ConfigError,
         r"^data\.path: data=idx needs the directory of the IDX files"),
    case("config:missing-data.split", stage("prepare", "~data.split"), ConfigError,
         r"^data\.split\.train: missing"),
    case("config:missing-model.estimator", stage("train", "~model.estimator"), ConfigError,
         r"^model\.estimator: missing"),
    case("config:missing-paths.prepared", stage("prepare", "paths.prepared=null"),
         ConfigError, r"^paths\.prepared: must not be null \(got None\)"),
    case("config:missing-seed", stage("prepare", "~seed"), ConfigError, r"^seed: missing"),
    case("config:model.estimator=SVC", stage("train", "model.estimator=SVC"), ConfigError,
         r"^model\.estimator: must be one of \[MLPClassifier, CNNClassifier\] \(got 'SVC'\)"),
    case("config:unknown-key-model.hiden", stage("train", "+model.hiden=3"), ConfigError,
         r"^model\.hiden: unknown key"),
    case("config:unknown-key-train.learnig_rate", stage("train", "+train.learnig_rate=0.3"),
         ConfigError, r"train\.learnig_rate"),
    case("config:unknown-key-augment.transforms.blur",
         stage("augment", "+augment.transforms.blur={sigma: 1}"), ConfigError,
         r"^augment\.transforms\.blur: unknown key"),
    case("config:unknown-key-data.colour", stage("prepare", "+data.colour=red"), ConfigError,
         r"^data\.colour: unknown key"),
    case("config:unknown-key-search.n_trails", stage("search", "+search.n_trails=3"),
         ConfigError, r"search\.n_trails"),
    case("config:use_search-without-search", stage("train", "train.use_search=true"),
         ArtifactError, r"best_params.yaml: not found; run `python -m pipeline.search` first"),
    case("config:best-params-invalid-yaml", best_params("config: {train: [1, 2\n"),
         ArtifactError, r"best_params.yaml: not valid YAML"),
    case("config:best-params-a-list", best_params("- 1\n- 2\n"),
         ArtifactError, r"best_params.yaml: expected a mapping of names to values, got a list"),
    case("config:best-params-no-config", best_params("study: s\n"),
         ArtifactError, r"best_params.yaml: `config` must be a mapping of \['train', 'model'\]"),
    case("config:best-params-unknown-section", best_params("study: s\nparams: {l2: 1.0}\n"),
         ArtifactError, r"best_params.yaml: params: unknown key"),
    case("config:best-params-bad-value",
         best_params("config: {train: {learning_rate: -1.0}}\n"),
         ConfigError, r"best_params.yaml: train\.learning_rate: must be > 0 \(got -1\.0\)"),
    case("config:best-params-unknown-key", best_params("config: {train: {eta: 0.5}}\n"),
         ConfigError, r"best_params.yaml: train\.eta: unknown key"),
    case("config:evaluate.misclassified_grid=abc",
         stage("evaluate", "evaluate.misclassified_grid=abc"), ConfigError,
         r"evaluate\.misclassified_grid.*'abc'"),
    case("config:params-file-missing", params_file(None), ConfigError,
         r"params.yaml: params file not found; run `python -m pipeline.params`"),
    case("config:params-file-not-a-mapping", params_file("- 1\n- 2\n"), ConfigError,
         r"params.yaml: expected a mapping at the top level"),
    case("config:params-file-invalid-yaml", params_file("data: [1, 2\n"), ConfigError,
         r"params.yaml: .*(YAML|yaml)"),
    case("config:params-file-empty", params_file(""), ConfigError, r"params.yaml: "),
    case("config:params-file-not-utf8", params_file(b"seed: \xff\xfe\n"), ConfigError,
         r"params.yaml: not valid YAML \('utf-8' codec can't decode"),
]  # fmt: skip


# --- space: search spaces, samplers, pruners ------------------------------------------------------
def space(id: str, *extra: str, match: str, bug: str | None = None):
    return case(f"space:{id}", stage("search", *extra), ConfigError, match, bug)


def search_without_dimensions(e: Env):
    """search with every dimension of the configured space deleted on the command line."""
    return e.stage("search", *(f"~search.space.{name}" for name in e.config().search.space))


SPACES = [
    space("low>high", "search.space.l2={low: 1.0, high: 0.1, log: true}",
          match=r"^search\.space\.l2: low=1\.0 is greater than high=0\.1"),
    space("log-low-zero", "search.space.learning_rate.low=0",
          match=r"^search\.space\.learning_rate\.low: must be > 0 on a log scale; got 0"),
    space("log-low-negative", "search.space.learning_rate.low=-1",
          match=r"^search\.space\.learning_rate\.low: must be > 0 on a log scale; got -1"),
    space("empty-choices", "search.space.batch_size.choices=[]",
          match=r"^search\.space\.batch_size\.choices: must be a non-empty list"),
    space("unknown-key", "+search.space.l2.step=2",
          match=r"^search\.space\.l2\.step: unknown key"),
    space("bound-not-a-number", "search.space.learning_rate.low=abc",
          match=r"^search\.space\.learning_rate\.low: must be a number; got 'abc'"),
    space("dimension-not-a-mapping", "search.space.l2=5",
          match=r"^search\.space\.l2: expected \{low, high\[, log\]\} or \{choices\}; got 5"),
    case("space:empty", search_without_dimensions, ConfigError,
         r"^search\.space: empty; give at least one dimension"),
    space("null", "search.space=null", match=r"search\.space"),
    case("space:missing", stage("search", "~search.space"), ConfigError,
         r"^search\.space: empty; give at least one dimension"),
    space("unknown-parameter", "+search.space.learnin_rate={low: 0.1, high: 1.0}",
          match=r"search\.space\.learnin_rate"),
    space("unknown-sampler", "search.sampler.name=grid",
          match=r"^search\.sampler\.name: must be one of \[tpe, random, cmaes, gp\] "
                r"\(got 'grid'\)"),
    space("unknown-pruner", "search.pruner.name=patient",
          match=r"^search\.pruner\.name: must be one of \[median"),
]  # fmt: skip


# --- model: tampered model files ----------------------------------------------------------------
def load_tampered(**changes):
    """``load_model`` on the template's model with ``changes`` (see Env.tampered_model)."""

    def act(e: Env):
        arrays, meta = e.model_files()
        made = {key: change(arrays, meta, e) for key, change in changes.items()}
        return load_model(e.tampered_model(**made))

    return act


def arrays_with(**replace_arrays):
    return lambda arrays, meta, e: {**arrays, **replace_arrays}


def meta_with(**fields):
    return lambda arrays, meta, e: {**meta, **fields}


def pickle_payload(arrays, meta, e: Env) -> bytes:
    return pickle.dumps(Payload(e.marker))


def object_array_npz(arrays, meta, e: Env) -> bytes:
    path = e.tmp / "object.npz"
    np.savez(path, **{**arrays, "0.W": np.array([Payload(e.marker)], dtype=object)})
    return path.read_bytes()


def evaluate_with_pickled_model(e: Env):
    npz, description = e.root / "models" / "model.npz", e.root / "models" / "model.json"
    npz.write_bytes(pickle.dumps(Payload(e.marker)))
    meta = json.loads(description.read_text())
    description.write_text(json.dumps({**meta, "weights_sha256": file_checksum(npz)}))
    return e.stage("evaluate")


def weights_changed_alone(e: Env):
    """Weights rewritten without their description (a save interrupted between the two)."""
    npz = e.root / "models" / "model.npz"
    with np.load(npz, allow_pickle=False) as weights:
        arrays = {k: v * 2 for k, v in weights.items()}
    np.savez(npz, **arrays)
    return e.stage("evaluate")


def model_json_is_a_directory(e: Env):
    (e.tmp / "model.json").mkdir()
    return load_model(e.tmp / "model")


WEIGHTS_DO_NOT_FIT = r"model\.npz: weights do not fit \S*model\.json"
MODELS = [
    case("model:npz-wrong-shape",
         load_tampered(arrays=arrays_with(**{"0.W": np.zeros((3, 3), np.float32)})),
         ArtifactError, rf"{WEIGHTS_DO_NOT_FIT} \(parameter '0\.W' has shape \(3, 3\), expected"),
    case("model:npz-extra-key", load_tampered(arrays=arrays_with(extra=np.zeros(3))),
         ArtifactError, rf"{WEIGHTS_DO_NOT_FIT} \(parameter names differ: .*'extra'"),
    case("model:npz-missing-key",
         load_tampered(arrays=lambda arrays, meta, e: {k: v for k, v in arrays.items()
                                                        if k != "1.b"}),
         ArtifactError, rf"{WEIGHTS_DO_NOT_FIT} \(parameter names differ: expected \['0\.W', "
                        r"'0\.b', '1\.W', '1\.b'\], got \['0\.W', '0\.b', '1\.W'\]"),
    case("model:npz-nan-weights",
         load_tampered(arrays=lambda arrays, meta, e: {
             **arrays, "0.W": np.full_like(arrays["0.W"], np.nan)}),
         ArtifactError, r"model\.npz: .*(NaN|nan|finite)"),
    case("model:npz-is-a-pickle", load_tampered(npz_bytes=pickle_payload), ArtifactError,
         r"model\.npz: refused, holds pickled objects"),
    case("model:npz-object-array", load_tampered(npz_bytes=object_array_npz), ArtifactError,
         r"model\.npz: refused, holds pickled objects"),
    case("model:npz-truncated",
         load_tampered(npz_bytes=lambda arrays, meta, e: e.model_bytes()[:-40]),
         ArtifactError, r"model\.npz: not a valid \.npz file"),
    case("model:npz-empty", load_tampered(npz_bytes=lambda arrays, meta, e: b""),
         ArtifactError, r"model\.npz: not a valid \.npz file"),
    case("model:json-unknown-estimator", load_tampered(meta=meta_with(estimator="os.system")),
         ArtifactError, r"model\.json: .*unknown estimator 'os\.system'; expected one of "
                        r"\['CNNClassifier', 'MLPClassifier', 'MLPRegressor'\]"),
    case("model:json-format-version", load_tampered(meta=meta_with(format_version=99)),
         ArtifactError, r"model\.json: .*format_version 99 is not 1"),
    case("model:json-unknown-parameter",
         load_tampered(meta=lambda a, meta, e: {**meta, "params": {**meta["params"], "evil": 1}}),
         ArtifactError, r"model\.json: invalid model description .*'evil'"),
    case("model:json-invalid-parameter",
         load_tampered(meta=lambda a, meta, e: {**meta, "params": {**meta["params"],
                                                                    "activation": "softplus"}}),
         ArtifactError, r"model\.json: invalid model description \(The 'activation' parameter"),
    case("model:json-missing-field",
         load_tampered(meta=lambda a, meta, e: {k: v for k, v in meta.items() if k != "classes"}),
         ArtifactError, r"model\.json: missing or unknown field 'classes'"),
    case("model:json-classes-do-not-fit", load_tampered(meta=meta_with(classes=[0, 1, 2])),
         ArtifactError, rf"{WEIGHTS_DO_NOT_FIT} \(parameter '1\.W' has shape"),
    case("model:json-not-json", load_tampered(json_text=lambda a, m, e: "{not json"),
         ArtifactError, r"model\.json: not valid JSON"),
    case("model:json-is-a-directory", model_json_is_a_directory,
         ArtifactError, r"model\.json: file not found \(a directory\)"),
    case("model:missing", lambda e: load_model(e.tmp / "nothing"),
         ArtifactError, r"nothing\.json: file not found"),
    case("model:evaluate-pickled-model", evaluate_with_pickled_model,
         ArtifactError, r"models/model\.npz: .*refused, holds pickled objects"),
    case("model:weights-without-their-description", weights_changed_alone,
         ArtifactError, r"models/model\.npz: its checksum is not the weights_sha256 of "),
]  # fmt: skip


CASES = [*INPUTS, *PARAMS, *DATA, *CONFIGS, *SPACES, *MODELS]


@pytest.mark.parametrize("bad", CASES)
def test_bad_input(bad: Bad, env: Env):
    with pytest.raises(bad.error) as info:
        bad.act(env)
    message = str(info.value)
    assert re.search(bad.match, message), f"the message does not name the problem: {message!r}"
    env.assert_nothing_left()


def test_the_table_is_large_enough():
    surfaces = {param.id.split(":")[0] for param in CASES}
    assert surfaces == {"input", "param", "data", "config", "space", "model"}
    assert len(CASES) >= 30
    assert len({param.id for param in CASES}) == len(CASES), "case ids must be unique"


def test_the_pickle_payload_would_run(tmp_path):
    """The payload the model cases use does run when unpickled: their check means something."""
    marker = tmp_path / "EXECUTED"
    pickle.loads(pickle.dumps(Payload(marker)))  # noqa: S301 (the point of the test)
    assert marker.read_text() == "executed"
