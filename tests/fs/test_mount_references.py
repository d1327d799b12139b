"""References read through a real mount (issue 18): ``cat`` and ``open`` of entries whose
bytes are on this machine's disk and on a loopback HTTP server, fetched lazily by the
daemon and checked before any byte is served; a source changed since it was logged is EIO
with one log line naming the entry and the URI, never other bytes."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fs.conftest import Mount
from refsources import HttpSource, serving

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.sdk import Api, Artifact

pytestmark = pytest.mark.mount


@pytest.fixture
def http_source() -> Iterator[HttpSource]:
    with serving() as source:
        yield source


def test_mount_reads_references_and_a_changed_one_is_eio(
        api: Api, mounted: Mount, tmp_path: Path, http_source: HttpSource) -> None:
    src = tmp_path / "src"
    src.mkdir()
    notes, later = b"notes on disk\n", b"read only after it changed\n"
    (src / "notes.txt").write_bytes(notes)
    (src / "later.txt").write_bytes(later)
    big = os.urandom(2 * CHUNK_SIZE + 999)
    url = http_source.put("/weights.bin", big, etag='"w-1"')
    art = Artifact("refs", "dataset", api=api)
    art.add_reference(src.as_uri(), name="disk")
    art.add_reference(url, name="net/weights.bin")
    moved = http_source.put("/moved.bin", b"as logged" * 1000, etag='"m-1"')
    art.add_reference(moved, name="net/moved.bin")
    art.save(project="vision")
    folder = mounted.path / "vision/dataset/refs:v0"

    logged = len(http_source.requests_for("/weights.bin"))  # add_reference's GET
    assert sorted(os.listdir(folder / "disk")) == ["later.txt", "notes.txt"]
    assert (folder / "net/weights.bin").stat().st_size == len(big)
    cat = subprocess.run(["cat", str(folder / "disk/notes.txt")], capture_output=True,
                         timeout=30)
    assert cat.returncode == 0 and cat.stdout == notes
    with open(folder / "net/weights.bin", "rb") as f:
        f.seek(CHUNK_SIZE + 10)
        assert f.read(1000) == big[CHUNK_SIZE + 10 : CHUNK_SIZE + 1010]
        f.seek(0)
        assert f.read() == big
    # one whole fetch, then the cache
    assert len(http_source.requests_for("/weights.bin")) == logged + 1

    (src / "later.txt").write_bytes(later.upper())  # same size, other bytes
    with pytest.raises(OSError) as caught:
        (folder / "disk/later.txt").read_bytes()
    assert caught.value.errno == errno.EIO
    lines = [line for line in mounted.log_text().splitlines() if "later.txt" in line]
    assert any("EIO" in line and (src / "later.txt").as_uri() in line and "changed" in line
               for line in lines), lines
    assert mounted.alive()
    assert (folder / "disk/notes.txt").read_bytes() == notes  # the mount goes on
    # the kernel asks again at once for a read that failed: answered with the error just
    # found, not with a second fetch of the source
    http_source.put("/moved.bin", b"as changed" * 1000, etag='"m-2"', if_match=False)
    before = len(http_source.requests_for("/moved.bin"))
    with pytest.raises(OSError) as caught:
        (folder / "net/moved.bin").read_bytes()
    assert caught.value.errno == errno.EIO
    assert len(http_source.requests_for("/moved.bin")) == before + 1


@pytest.mark.parametrize("transport", ["embedded"])
def test_a_mount_shared_with_other_users_reads_no_file_references(
        api: Api, mount_factory, tmp_path: Path, http_source: HttpSource) -> None:
    (tmp_path / "mine.txt").write_bytes(b"the daemon user's own file\n")
    url = http_source.put("/open.txt", b"anyone may read this\n", etag='"o"')
    art = Artifact("refs", "dataset", api=api)
    art.add_reference((tmp_path / "mine.txt").as_uri())
    art.add_reference(url)
    art.save(project="vision")
    mount = mount_factory("--allow-other")
    folder = mount.path / "vision/dataset/refs:v0"
    with pytest.raises(OSError) as caught:
        (folder / "mine.txt").read_bytes()
    assert caught.value.errno == errno.EIO
    assert "file:// references are not read by a mount shared" in mount.log_text()
    assert (folder / "open.txt").read_bytes() == b"anyone may read this\n"


@pytest.mark.parametrize("transport", ["embedded"])
def test_a_reference_slower_than_the_read_timeout_is_fetched_once_for_later_reads(
        api: Api, mount_factory, http_source: HttpSource) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 5)
    url = http_source.put("/slow.bin", data, etag='"s"', delay=2.5)
    art = Artifact("refs", "dataset", api=api)
    art.add_reference(url)
    art.save(project="vision")
    logged = len(http_source.requests_for("/slow.bin"))
    mount = mount_factory("--read-timeout", "1")
    path = mount.path / "vision/dataset/refs:v0/slow.bin"
    with pytest.raises(OSError) as caught:
        path.read_bytes()
    assert caught.value.errno == errno.EIO
    assert "still being fetched and checked after --read-timeout" in mount.log_text()
    deadline = time.monotonic() + 30
    while True:  # the fetch went on: once it is done, reads come from the cache
        try:
            assert path.read_bytes() == data
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert len(http_source.requests_for("/slow.bin")) == logged + 1
