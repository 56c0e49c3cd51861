"""IDX reader and writer: round trips, gzip detection and every kind of corruption."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from pipeline.data import DataError
from pipeline.data.idx import encode_idx, parse_idx, read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    ("dtype", "shape"),
    [("u1", (5, 28, 28)), ("u1", (7,)), ("i1", (3, 4)), (">i2", (2, 3)), ("<i4", (4,)),
     ("f4", (2, 2, 2)), ("f8", (3, 1))],
)  # fmt: skip
def test_round_trip(tmp_path, dtype, shape, suffix):
    rng = np.random.default_rng(0)
    array = (rng.random(shape) * 100).astype(dtype)
    path = write_idx(tmp_path / f"a{suffix}", array)
    back = read_idx(path)
    assert back.shape == array.shape
    assert back.dtype.isnative and back.dtype.kind == array.dtype.kind
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_mnist_header_and_gzip(tmp_path):
    images = np.zeros((2, 28, 28), np.uint8)
    raw = encode_idx(images)
    assert raw[:4] == bytes.fromhex("00000803")
    assert raw[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert encode_idx(np.zeros(3, np.uint8))[:4] == bytes.fromhex("00000801")
    gz_path = write_idx(tmp_path / "x.gz", images)
    assert gz_path.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(gz_path.read_bytes()) == raw
    # gzip is recognised by content, not by name
    misnamed = tmp_path / "train-images-idx3-ubyte"
    misnamed.write_bytes(gz_path.read_bytes())
    np.testing.assert_array_equal(read_idx(misnamed), images)


def test_expect_ndim(tmp_path):
    path = write_idx(tmp_path / "labels", np.zeros(4, np.uint8))
    assert read_idx(path, expect_ndim=1).shape == (4,)
    with pytest.raises(DataError, match=rf"{path}: expected 3-dimensional IDX images"):
        read_idx(path, expect_ndim=3)


def _header(code: int, dims: tuple[int, ...]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short for an IDX header"),
        (b"\x00\x00\x08", "too short for an IDX header"),
        (b"\x01\x02\x08\x03" + bytes(20), r"not an IDX file: magic number 0x01020803"),
        (b"\x00\x00\x07\x01" + bytes(8), r"magic number 0x00000701"),  # unknown type
        (b"\x00\x00\x08\x00", r"magic number 0x00000800"),  # no dimensions
        (b"PK\x03\x04" + bytes(20), "not an IDX file"),  # a zip, say
        (_header(8, (2, 28, 28))[:10], r"truncated IDX header \(10 of 16 bytes\)"),
        (_header(8, (2, 28, 28)) + bytes(2 * 28 * 28 - 1), r"truncated: dimensions \(2, 28, 28\)"),
        (_header(8, (3,)) + bytes(4), "1 unexpected bytes after"),
        (_header(0x0B, (3,)) + bytes(5), "truncated"),
        (_header(8, (300, 0, 0)), r"an item dimension is 0 in dimensions \(300, 0, 0\)"),
        (_header(8, (300, 20, 0)), r"an item dimension is 0 in dimensions \(300, 20, 0\)"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, data, message):
    for path, payload in ((tmp_path / "f", data), (tmp_path / "f.gz", gzip.compress(data))):
        path.write_bytes(payload)
        with pytest.raises(DataError, match=message) as info:
            read_idx(path)
        assert str(info.value).startswith(f"{path}: ")


def test_truncated_gzip(tmp_path):
    good = gzip.compress(encode_idx(np.arange(1000, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=rf"{path}: corrupt or truncated gzip"):
        read_idx(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path / 'nope'}: file not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataError, match="is a directory"):
        read_idx(tmp_path)


def test_parse_idx_names_its_source():
    with pytest.raises(DataError, match="^mybytes: "):
        parse_idx(b"\xff", name="mybytes")


@pytest.mark.parametrize("array", [np.zeros(3, bool), np.zeros(3, np.uint16), np.zeros(())])
def test_write_refuses_what_idx_cannot_hold(tmp_path, array):
    with pytest.raises(ValueError, match="IDX cannot store"):
        write_idx(tmp_path / "x", array)
    assert list(tmp_path.iterdir()) == []
