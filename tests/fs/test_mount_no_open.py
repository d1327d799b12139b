"""Read-only mounts and no-open: the kernel opens files without asking the daemon.

A ``--read-only`` mount answers the first OPEN with ENOSYS; from then on the kernel sends no
OPEN or RELEASE for files, keeps their pages, and names the file of every READ by its inode
(the project's pyfuse3 patch hands the inode over when the handle is 0). These tests check
the bytes, the requests the daemon saw, and what must still change: alias moves, pages the
kernel let go of, and writes (refused).
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pyfuse3
import pytest
from fs.conftest import Mount, take_down
from fs.test_mount_tree import push
from helpers import ARTIFACTFS

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.sdk import Api, Artifact

PATCHED = bool(getattr(pyfuse3, "NO_HANDLE_READ_GIVES_INODE", False))
needs_patch = pytest.mark.skipif(not PATCHED, reason="pyfuse3 without the project's patch")

FILES = {
    "small.txt": b"hello, world\n" * 100,
    "big.bin": os.urandom(3 * CHUNK_SIZE + 777),
    "nested/two.bin": os.urandom(200_000),
    "nested/deeper/three.txt": b"three\n",
}


@pytest.fixture
def dataset(api: Api, tmp_path: Path) -> Artifact:
    return push(api, tmp_path, FILES)


def read_version(mount: Mount, label: str = "v0") -> dict[str, bytes]:
    base = mount.path / f"vision/dataset/mnist:{label}"
    return {rel: (base / rel).read_bytes() for rel in FILES}


def requests(mount: Mount) -> dict[str, int]:
    return dict(mount.stats()["requests"])  # type: ignore[call-overload]


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Requests between two stats reads, but getxattr (reading the stats is one or two)."""
    out = {k: after.get(k, 0) - before.get(k, 0) for k in after if k != "getxattr"}
    return {k: v for k, v in out.items() if v}


def evict(path: Path) -> None:
    """Make the kernel let go of a file's cached pages, as memory pressure would."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@needs_patch
def test_read_only_mount_reads_right_bytes_with_no_open_or_release(
    dataset: Artifact, mount_factory
):
    mount = mount_factory("--read-only")
    stats = mount.stats()
    assert stats["no_open"] is True and stats["read_only"] is True
    for label in ("v0", "latest", "best"):
        assert read_version(mount, label) == FILES
    seen = requests(mount)
    assert seen.get("open", 0) == 1  # the one that answered ENOSYS
    assert seen.get("release", 0) == 0
    assert seen["read"] >= len(FILES)
    # a warm epoch: every byte from the kernel's page cache, not one request
    before = requests(mount)
    for label in ("v0", "latest", "best"):
        assert read_version(mount, label) == FILES
    assert delta(before, requests(mount)) == {}


@needs_patch
def test_pages_the_kernel_dropped_are_fetched_and_verified_again(
    dataset: Artifact, mount_factory
):
    mount = mount_factory("--read-only")
    assert read_version(mount) == FILES
    base = mount.path / "vision/dataset/mnist:v0"
    for rel in FILES:
        evict(base / rel)
    before = requests(mount)
    assert read_version(mount) == FILES
    assert delta(before, requests(mount)).get("read", 0) >= len(FILES)
    # reads at an offset of a file the kernel opened itself
    with open(base / "big.bin", "rb") as f:
        f.seek(2 * CHUNK_SIZE + 5)
        assert f.read(100) == FILES["big.bin"][2 * CHUNK_SIZE + 5 : 2 * CHUNK_SIZE + 105]


@needs_patch
def test_an_alias_move_shows_the_new_version_and_open_files_keep_theirs(
    api: Api, dataset: Artifact, tmp_path: Path, mount_factory
):
    mount = mount_factory("--read-only", "--alias-timeout", "0.2")
    latest = mount.path / "vision/dataset/mnist:latest"
    assert (latest / "small.txt").read_bytes() == FILES["small.txt"]
    held = open(latest / "big.bin", "rb")  # noqa: SIM115 (read after the move)
    try:
        changed = {**FILES, "small.txt": b"second version\n", "big.bin": os.urandom(5000)}
        push(api, tmp_path, changed)
        deadline = time.monotonic() + 10
        while (latest / "small.txt").read_bytes() != b"second version\n":
            assert time.monotonic() < deadline, "latest never moved"
            time.sleep(0.1)
        assert (latest / "big.bin").read_bytes() == changed["big.bin"]
        assert (mount.path / "vision/dataset/mnist:v0/small.txt").read_bytes() == (
            FILES["small.txt"])
        assert held.read() == FILES["big.bin"]  # the file opened before the move
    finally:
        held.close()


def test_read_only_mount_refuses_every_change(dataset: Artifact, mount_factory):
    mount = mount_factory("--read-only")
    folder = mount.path / "vision/dataset/mnist:latest"
    for attempt in (
        lambda: os.open(folder / "small.txt", os.O_WRONLY | os.O_APPEND),
        lambda: os.open(folder / "new.txt", os.O_WRONLY | os.O_CREAT, 0o644),
        lambda: os.mkdir(folder / "sub"),
        lambda: os.unlink(folder / "small.txt"),
        lambda: os.rename(folder / "small.txt", folder / "moved.txt"),
        lambda: os.setxattr(folder / "small.txt", "user.note", b"x"),
        lambda: os.mkdir(mount.path / "vision/dataset/fresh:latest"),
    ):
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS
    assert os.stat(folder / "small.txt").st_mode & 0o222 == 0
    assert os.stat(folder).st_mode & 0o222 == 0
    assert read_version(mount, "latest") == FILES
    proc = subprocess.run([ARTIFACTFS, "save", str(folder), "-m", "no"], env=mount.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "read-only" in proc.stderr and "Traceback" not in proc.stderr


def test_changes_staged_by_a_writable_mount_wait_for_the_next_one(
    dataset: Artifact, mount_factory
):
    # the same mount point each time: staged changes belong to (registry, entity, path)
    writable = mount_factory()
    (writable.path / "vision/dataset/mnist:latest/added.txt").write_bytes(b"staged\n")
    take_down(writable)
    reader = mount_factory("--read-only")
    latest = reader.path / "vision/dataset/mnist:latest"
    assert not (latest / "added.txt").exists()
    assert read_version(reader, "latest") == FILES
    take_down(reader)
    again = mount_factory()
    assert (again.path / "vision/dataset/mnist:latest/added.txt").read_bytes() == b"staged\n"


def test_open_per_file_keeps_the_open_path_on_a_read_only_mount(
    dataset: Artifact, mount_factory
):
    """What a pyfuse3 without the patch gives: every open reaches the daemon, and re-reads
    still come from the kernel's cache (keep_cache)."""
    mount = mount_factory("--read-only", "--open-per-file")
    assert mount.stats()["no_open"] is False
    assert read_version(mount) == FILES
    before = requests(mount)
    assert read_version(mount) == FILES
    seen = delta(before, requests(mount))
    assert seen.get("open", 0) == len(FILES) and seen.get("release", 0) == len(FILES)
    assert "read" not in seen
