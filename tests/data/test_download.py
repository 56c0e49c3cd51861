"""Downloads against a local http.server on 127.0.0.1 serving generated IDX files."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.data.download import (
    DownloadError,
    RemoteFile,
    fetch,
    fetch_all,
    file_checksum,
    mirror_url,
)
from pipeline.data.idx import read_idx
from tests.data import (
    closed_port_url,
    leftovers,
    make_idx_dataset,
    md5,
    serve_directory,
    sha256,
    silent_server,
)


@pytest.fixture
def mirror(tmp_path):
    """(base URL, requested paths, {role: served file}) of a local mirror of a small dataset."""
    files = make_idx_dataset(tmp_path / "mirror", n_train=30, n_test=10)
    with serve_directory(tmp_path / "mirror") as (url, requests):
        yield url, requests, files


def test_checksum_accepted_and_file_cached(mirror, tmp_path):
    url, requests, files = mirror
    served = files["train_images"]
    cache = tmp_path / "cache"
    path = fetch(RemoteFile(served.name, md5=md5(served)), [url], cache, timeout=5)
    assert path == cache / served.name
    assert path.read_bytes() == served.read_bytes()
    assert requests == [f"/{served.name}"]
    assert read_idx(path).shape == (30, 28, 28)
    assert leftovers(cache) == []


def test_sha256_accepted(mirror, tmp_path):
    url, _, files = mirror
    served = files["test_labels"]
    path = fetch(RemoteFile(served.name, sha256=sha256(served)), [url], tmp_path / "c", timeout=5)
    assert file_checksum(path) == sha256(served)


def test_cache_reused_without_a_request(mirror, tmp_path):
    url, requests, files = mirror
    remotes = [RemoteFile(path.name, md5=md5(path)) for path in files.values()]
    first = fetch_all(remotes, [url], tmp_path / "cache", timeout=5)
    assert len(requests) == 4
    second = fetch_all(remotes, [url], tmp_path / "cache", timeout=5)
    assert second == first
    assert len(requests) == 4  # the second call made no request
    # and the cache serves even when every mirror is gone
    assert fetch_all(remotes, [closed_port_url()], tmp_path / "cache", timeout=5) == first


def test_corrupt_cached_file_is_downloaded_again(mirror, tmp_path):
    url, requests, files = mirror
    served = files["train_labels"]
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / served.name).write_bytes(b"stale")
    path = fetch(RemoteFile(served.name, md5=md5(served)), [url], cache, timeout=5)
    assert path.read_bytes() == served.read_bytes()
    assert len(requests) == 1


def test_checksum_mismatch_rejected(mirror, tmp_path):
    url, _, files = mirror
    served = files["train_images"]
    cache = tmp_path / "cache"
    wrong = RemoteFile(served.name, md5="0" * 32)
    with pytest.raises(
        DownloadError, match=f"{served.name}: md5 checksum mismatch: got {md5(served)}"
    ):
        fetch(wrong, [url], cache, timeout=5)
    assert not (cache / served.name).exists()
    assert leftovers(cache) == []


def test_server_down_says_how_to_place_files_by_hand(tmp_path):
    remotes = [RemoteFile(f"f{i}.gz", md5="0" * 32) for i in range(4)]
    cache = tmp_path / "cache"
    down = closed_port_url()
    with pytest.raises(DownloadError) as info:
        fetch_all(remotes, [down], cache, timeout=5)
    message = str(info.value)
    assert f"could not download f0.gz: {down}f0.gz: " in message
    assert "refused" in message.lower()
    assert f"download f0.gz, f1.gz, f2.gz, f3.gz and put them in {cache.resolve()}/" in message
    assert "\n" not in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_falls_through_to_the_next_mirror(mirror, tmp_path):
    url, requests, files = mirror
    served = files["test_images"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve_directory(empty) as (url_404, requests_404):
        mirrors = [closed_port_url(), url_404, url]
        path = fetch(RemoteFile(served.name, md5=md5(served)), mirrors, tmp_path / "c", timeout=5)
    assert path.read_bytes() == served.read_bytes()
    assert requests_404 == [f"/{served.name}"] and requests == [f"/{served.name}"]


def test_every_failure_is_reported(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with serve_directory(empty) as (url_404, _), pytest.raises(DownloadError) as info:
        fetch(RemoteFile("x.gz", md5="0" * 32), [url_404, "nosuchscheme://host/"], tmp_path, 5)
    assert "HTTP Error 404" in str(info.value)
    assert "nosuchscheme://host/x.gz" in str(info.value)


def test_timeout(tmp_path):
    start = time.monotonic()
    with silent_server() as url, pytest.raises(DownloadError, match="timed out"):
        fetch(RemoteFile("slow.gz", md5="0" * 32), [url], tmp_path, timeout=0.3)
    assert time.monotonic() - start < 5
    assert leftovers(tmp_path) == []


def test_no_mirrors(tmp_path):
    with pytest.raises(DownloadError, match="no mirrors configured"):
        fetch(RemoteFile("a.gz", md5="0" * 32), [], tmp_path)


def test_mirror_url():
    assert mirror_url("http://h/a", "f.gz") == "http://h/a/f.gz"
    assert mirror_url("http://h/a/", "f.gz") == "http://h/a/f.gz"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a"}, "needs an md5 or a sha256"),
        ({"name": "a", "md5": "XYZ"}, "is not lowercase hex"),
        ({"name": "a", "sha256": "0" * 32}, "is not lowercase hex"),
        ({"name": "../a", "md5": "0" * 32}, "invalid file name"),
        ({"name": "", "md5": "0" * 32}, "invalid file name"),
    ],
)
def test_remote_file_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RemoteFile(**kwargs)


def test_sha256_preferred_over_md5(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(np.arange(10, dtype=np.uint8).tobytes())
    remote = RemoteFile("x", md5="0" * 32, sha256=sha256(path))
    assert remote.algorithm == "sha256" and remote.checksum == sha256(path)
