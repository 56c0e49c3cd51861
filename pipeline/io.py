"""Low-level file I/O: atomic writes, checksums, and reading npz, JSON and YAML with clear
errors. Imports nothing from ``pipeline`` (and nothing heavier than NumPy and PyYAML), so
that every layer, from the data readers up, can use it.

Every output goes through :func:`atomic_path`: it is written to a temporary file in the
target's directory and renamed over the target only when complete, so an interrupted run
never leaves a half-written file that a later stage could take as valid.

Arrays are always read with ``allow_pickle=False``, so a tampered file cannot execute code.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.lib import format as npy_format

_UMASK = os.umask(0)
os.umask(_UMASK)


class ArtifactError(ValueError):
    """A file the pipeline reads is missing, malformed or not what it claims to be."""


# --- writing -------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was; an OSError
    (read-only directory, disk full) is raised again naming ``path``, not the temporary file.
    """
    target = Path(path)
    tmp_path = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        yield tmp_path
        os.replace(tmp_path, target)
    except OSError as err:
        raise OSError(err.errno, f"cannot write {target}: {err.strerror or err}") from err
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def is_partial_write(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the temporary file of an :func:`atomic_path` write in progress
    (``.<name>.<random>.tmp`` beside its target), possibly another process's."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` for the block (the kernel releases it if the holder
    dies): one process at a time creates a store or spends a search budget."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_writable(*paths: str | os.PathLike) -> None:
    """Fail now, naming the file, if any of ``paths`` could not be written later: a stage
    calls this before hours of work whose result it would then lose. Directories it has to
    create stay created (empty); no file is left behind."""
    for path in map(Path, paths):
        if path.is_dir():  # an atomic rename onto it would fail after the work
            raise IsADirectoryError(errno.EISDIR, f"cannot write {path}: it is a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            os.unlink(probe)
        except (FileExistsError, NotADirectoryError) as err:  # a file where a folder belongs
            raise OSError(
                err.errno,
                f"cannot write {path}: a file stands where a directory of its path belongs",
            ) from err
        except OSError as err:
            raise OSError(err.errno, f"cannot write {path}: {err.strerror or err}") from err


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_text(data: Any) -> str:
    """``data`` as indented, key-sorted JSON; numpy scalars and arrays, tuples and sets too."""
    return json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json_text(data))


def save_arrays(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to an uncompressed ``.npz``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --- checksums -----------------------------------------------------------------------------
def new_hash(algorithm: str):
    """A fresh hash object; MD5 is used for integrity only, never for security."""
    return hashlib.new(algorithm, usedforsecurity=False)


def file_checksum(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: new_hash(algorithm)).hexdigest()


# --- reading -------------------------------------------------------------------------------
def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found" + (" (a directory)" if path.is_dir() else ""))
    return path


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``; a missing file or a syntax error is an ArtifactError."""
    path = _existing_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: not valid JSON ({err})") from None


def read_yaml(path: str | os.PathLike) -> Any:
    """The YAML value in ``path`` (safe loader: plain data only); errors as ArtifactError."""
    path = _existing_file(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ArtifactError(f"{path}: not valid YAML ({err})") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ArtifactError(f"{path}: not valid YAML{line} ({problem})") from None


def read_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON (``.json``) or YAML file that must hold a mapping with string keys."""
    path = Path(path)
    data = read_json(path) if path.suffix == ".json" else read_yaml(path)
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise ArtifactError(f"{path}: expected a mapping of names to values, got {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__}"


def load_arrays(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file, never unpickling; ``required`` keys must be present."""
    path = _existing_file(path)
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # numpy takes anything else for a pickle
            raise ArtifactError(f"{path}: not a valid .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as err:  # object arrays need pickle: refused
        raise ArtifactError(f"{path}: refused, holds pickled objects ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise ArtifactError(f"{path}: not a valid .npz file ({err})") from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise ArtifactError(f"{path}: missing arrays {missing}; has {sorted(arrays)}")
    return arrays


@dataclass(frozen=True)
class NpyHeader:
    """What an ``.npz`` member's NPY header declares, read without reading its data.

    ``np.asarray(header)`` reads the data (never unpickling).
    """

    path: Path
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        with np.load(self.path, allow_pickle=False) as npz:
            array = npz[self.name]
        if tuple(array.shape) != self.shape or array.dtype != self.dtype:
            raise ArtifactError(f"{self.path}: member {self.name!r} changed while being read")
        return array if dtype is None else array.astype(dtype)


def npz_headers(path: str | os.PathLike) -> dict[str, NpyHeader]:
    """The NPY headers of every member of an ``.npz``, checked against the members' sizes.

    Reads a few hundred bytes per member: a member that is not an NPY array, holds objects
    (pickle), declares a shape its bytes do not hold, is compressed (``np.savez`` stores
    members as they are) or appears twice is an ArtifactError, so the shapes returned are
    backed by data on disk: reading them allocates no more than the file's size.
    """
    path = _existing_file(path)
    with open(path, "rb") as fh:
        first = fh.read(1)
    if first == b"\x80":  # pickle's PROTO opcode; a zip starts with "PK"
        raise ArtifactError(f"{path}: refused, holds pickled objects (a pickle, not an .npz)")
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename.removesuffix(".npy")
                if not info.filename.endswith(".npy"):
                    raise ArtifactError(f"{path}: member {info.filename!r} is not an NPY array")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ArtifactError(
                        f"{path}: member {name!r} is compressed; expected the stored members "
                        "np.savez writes"
                    )
                if name in headers:
                    raise ArtifactError(f"{path}: member {name!r} appears twice")
                with archive.open(info) as member:
                    headers[name] = _npy_header(path, name, member, info.file_size)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ArtifactError(f"{path}: not a valid .npz file ({err})") from None
    return headers


_HEADER_READERS = {
    (1, 0): npy_format.read_array_header_1_0,
    (2, 0): npy_format.read_array_header_2_0,
}


def _npy_header(path: Path, name: str, member, size: int) -> NpyHeader:
    try:
        version = npy_format.read_magic(member)
        read_header = _HEADER_READERS.get(version)
        if read_header is None:
            raise ValueError(f"NPY format version {version} is not supported")
        shape, fortran_order, dtype = read_header(member)
    except (ValueError, TypeError, SyntaxError) as err:
        raise ArtifactError(f"{path}: member {name!r} is not a valid NPY array ({err})") from None
    if dtype.hasobject:
        raise ArtifactError(f"{path}: refused, holds pickled objects (member {name!r})")
    data_bytes = size - member.tell()
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if expected != data_bytes:
        raise ArtifactError(
            f"{path}: member {name!r} declares shape {shape} of {dtype} ({expected} bytes) "
            f"but holds {data_bytes} bytes"
        )
    return NpyHeader(path, name, tuple(shape), dtype, fortran_order)
