"""Fetch files from a list of mirrors into a cache directory, verified by checksum.

A file already in the cache with the right checksum is used as it is, without any request.
Otherwise each mirror is tried in turn; the response is streamed into a temporary file beside
the target while it is hashed, and renamed into place only when its checksum matches, so the
cache never holds a half-written or wrong file under the real name.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from pipeline.data import DataError
from pipeline.io import atomic_path, file_checksum, new_hash

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 16
USER_AGENT = "pipeline-data/0.1 (python urllib)"
_HEX = {"md5": re.compile(r"[0-9a-f]{32}"), "sha256": re.compile(r"[0-9a-f]{64}")}


class DownloadError(DataError):
    """No mirror delivered a file with the expected checksum."""


class ChecksumError(DownloadError):
    """A file's bytes do not match its published checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """A file to fetch: its name on the mirrors and its published MD5 and/or SHA-256."""

    name: str
    md5: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"invalid file name {self.name!r}")
        if self.md5 is None and self.sha256 is None:
            raise ValueError(f"{self.name}: needs an md5 or a sha256 checksum")
        for algorithm in ("md5", "sha256"):
            value = getattr(self, algorithm)
            if value is not None and not _HEX[algorithm].fullmatch(value):
                raise ValueError(f"{self.name}: {algorithm} {value!r} is not lowercase hex")

    @property
    def algorithm(self) -> str:
        """The checksum used: SHA-256 when published, else MD5."""
        return "sha256" if self.sha256 else "md5"

    @property
    def checksum(self) -> str:
        return self.sha256 or self.md5  # type: ignore[return-value]


def is_valid(path: Path, remote: RemoteFile) -> bool:
    """Whether ``path`` is a file whose checksum is the published one."""
    return path.is_file() and file_checksum(path, remote.algorithm) == remote.checksum


def fetch_all(
    files: Sequence[RemoteFile],
    mirrors: Sequence[str],
    cache_dir: str | os.PathLike,
    timeout: float = 30.0,
) -> list[Path]:
    """Paths in ``cache_dir`` of all ``files``, downloading those not validly cached.

    Raises :class:`DownloadError` naming the mirrors tried and saying how to place the
    files by hand when one of them cannot be had.
    """
    cache_dir = Path(cache_dir)
    missing = [remote for remote in files if not is_valid(cache_dir / remote.name, remote)]
    for remote in missing:
        try:
            fetch(remote, mirrors, cache_dir, timeout)
        except DownloadError as err:
            names = ", ".join(r.name for r in missing)
            raise DownloadError(
                f"{err}. To place the files by hand, download {names} and put them in "
                f"{cache_dir.resolve()}/"
            ) from None
    return [cache_dir / remote.name for remote in files]


def fetch(
    remote: RemoteFile,
    mirrors: Sequence[str],
    cache_dir: str | os.PathLike,
    timeout: float = 30.0,
) -> Path:
    """``cache_dir/remote.name``: reused when its checksum matches, else downloaded."""
    target = Path(cache_dir) / remote.name
    if is_valid(target, remote):
        log.info("using cached %s", target)
        return target
    if target.exists():
        log.warning("%s: checksum mismatch in the cache; downloading it again", target)
    if not mirrors:
        raise DownloadError(f"{remote.name}: not in {target.parent} and no mirrors configured")
    failures = []
    for base in mirrors:
        url = mirror_url(base, remote.name)
        try:
            download(url, target, remote, timeout)
            return target
        except DownloadError as err:
            failures.append(str(err))
    raise DownloadError(f"could not download {remote.name}: " + "; ".join(failures))


def mirror_url(base: str, name: str) -> str:
    """The URL of file ``name`` under the mirror ``base`` (with or without a final slash)."""
    return base.rstrip("/") + "/" + urllib.parse.quote(name)


def download(url: str, target: Path, remote: RemoteFile, timeout: float = 30.0) -> Path:
    """Stream ``url`` into ``target`` atomically, checking ``remote``'s checksum."""
    digest = new_hash(remote.algorithm)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with (
            urllib.request.urlopen(request, timeout=timeout) as response,
            atomic_path(target) as tmp,
            open(tmp, "wb") as out,
        ):
            size = response.headers.get("Content-Length")
            with tqdm(
                total=int(size) if size and size.isdigit() else None,
                unit="B",
                unit_scale=True,
                desc=remote.name,
                disable=None,
                leave=False,
            ) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
            out.flush()
            if digest.hexdigest() != remote.checksum:
                raise ChecksumError(
                    f"{url}: {remote.algorithm} checksum mismatch: got {digest.hexdigest()}, "
                    f"expected {remote.checksum}"
                )
    except ChecksumError:
        raise
    except urllib.error.HTTPError as err:
        raise DownloadError(f"{url}: {err}") from None
    except urllib.error.URLError as err:
        raise DownloadError(f"{url}: {err.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise DownloadError(f"{url}: {type(err).__name__}: {err}") from None
    log.info("downloaded %s -> %s", url, target)
    return target
