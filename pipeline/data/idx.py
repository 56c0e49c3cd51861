"""IDX files, the format of MNIST and Fashion-MNIST, read and written with validation.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (TT the element type, NN the number of
dimensions), NN big-endian 32-bit dimension sizes, then the elements, big-endian, in C order.
MNIST's image files are ``0x00000803`` (unsigned bytes, 3 dimensions: n x 28 x 28) and its
label files ``0x00000801`` (unsigned bytes, 1 dimension).

Files may be gzipped or raw: gzip is recognised by its own magic bytes, not by the file name.
Every problem is a :class:`~pipeline.data.DataError` whose message starts with the file's path.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from pipeline.data import DataError
from pipeline.io import atomic_path

#: IDX type code -> NumPy dtype of the stored (big-endian) elements.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dtype.kind, dtype.itemsize): code for code, dtype in IDX_DTYPES.items()}
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike, expect_ndim: int | None = None) -> np.ndarray:
    """The array stored in the IDX file ``path`` (gzipped or raw), in native byte order.

    ``expect_ndim`` (3 for images, 1 for labels) is checked when given.
    Raises :class:`~pipeline.data.DataError` for a missing, truncated or malformed file.
    """
    path = Path(path)
    array = parse_idx(_read_bytes(path), name=str(path))
    if expect_ndim is not None and array.ndim != expect_ndim:
        kind = {3: "images", 1: "labels"}.get(expect_ndim, "data")
        raise DataError(
            f"{path}: expected {expect_ndim}-dimensional IDX {kind}, got shape {array.shape}"
        )
    return array


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array encoded by the uncompressed IDX bytes ``data``; ``name`` goes in errors."""
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or code not in IDX_DTYPES or ndim == 0:
        magic = int.from_bytes(data[:4], "big")
        codes = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise DataError(
            f"{name}: not an IDX file: magic number 0x{magic:08x}, expected 0x0000TTNN "
            f"with type TT in ({codes}) and NN >= 1 dimensions (e.g. 0x00000803 for images)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header ({len(data)} of {header} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if 0 in dims[1:]:  # the first dimension counts items: 0 items is the caller's to judge
        raise DataError(f"{name}: an item dimension is 0 in dimensions {dims}")
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(data) < expected:
        raise DataError(
            f"{name}: truncated: dimensions {dims} need {expected} bytes, found {len(data)}"
        )
    if len(data) > expected:
        raise DataError(
            f"{name}: {len(data) - expected} unexpected bytes after the {expected} that "
            f"dimensions {dims} need"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``, atomically."""
    path = Path(path)
    payload = encode_idx(array)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path


def encode_idx(array: np.ndarray) -> bytes:
    """The uncompressed IDX bytes of ``array`` (a dtype that IDX can store, 1-255 dims)."""
    array = np.asarray(array)
    code = _CODES.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX cannot store an array of shape {array.shape}")
    header = bytes([0, 0, code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic."""
    if not path.is_file():
        where = "is a directory" if path.is_dir() else "file not found"
        raise DataError(f"{path}: {where}")
    data = path.read_bytes()
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated gzip data ({err})") from None
