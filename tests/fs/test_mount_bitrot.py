"""Bit rot in the disk cache is never served by a mount (issue 15, item 5).

A cache file that rots in place keeps its size, inode and (here restored on purpose) mtime,
so nothing but the bytes themselves can tell it changed. Each test damages real cache files
the way a disk would, then reads through real mounts and checks that the right bytes come
back, that the damaged entry was replaced, and that a later mount reads the repaired entry
without fetching anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fs.conftest import Mount, drop_caches
from fs.test_mount_tree import push

from artifactfs.cache import ContentCache
from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key
from artifactfs.sdk import Api, Artifact

pytestmark = pytest.mark.mount

SMALL = os.urandom(70_000)  # one whole-file blob in the cache
BIG = os.urandom(3 * CHUNK_SIZE + 123_456)  # four chunk files in the cache
OTHER = os.urandom(6 * CHUNK_SIZE)  # read to push BIG's chunks out of a 4 MiB memory budget
FILES = {"small.bin": SMALL, "big.bin": BIG, "other.bin": OTHER}


def cache_file(cache_dir: Path, name: str) -> Path:
    """Where the cache keeps object ``name`` (asked of the cache: the layout is its own)."""
    return ContentCache(cache_dir, 1 << 30).path(name)


def flip_byte(path: Path, offset: int) -> None:
    """Flip one bit at ``offset`` and put the file's times back: only the bytes differ."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_ino == st.st_ino


def resize(path: Path, delta: int) -> None:
    """Cut ``-delta`` bytes off the end, or add ``delta`` zero bytes, keeping the times."""
    st = path.stat()
    os.truncate(path, st.st_size + delta)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def read_file(mount: Mount, rel: str) -> bytes:
    return (mount.path / "vision/dataset/mnist:v0" / rel).read_bytes()


def damaged_names(art: Artifact) -> tuple[str, str]:
    """The cache names of the small blob and of chunk 1 of the big file."""
    return (blob_key(art.manifest["small.bin"].digest),
            f"{blob_key(art.manifest['big.bin'].digest)}.c1")


@pytest.fixture
def dataset(api: Api, tmp_path: Path) -> Artifact:
    return push(api, tmp_path, FILES, aliases=())


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
def test_a_damaged_cache_file_is_replaced_not_served(
    dataset: Artifact, config, mount_factory, damage: str
):
    first = mount_factory(name="one")
    assert read_file(first, "small.bin") == SMALL
    assert read_file(first, "big.bin") == BIG
    small_name, chunk_name = damaged_names(dataset)
    paths = [cache_file(config.cache_dir, n) for n in (small_name, chunk_name)]
    sizes = [p.stat().st_size for p in paths]
    for path in paths:
        if damage == "flip":
            flip_byte(path, 1000)
        else:
            resize(path, -1 if damage == "truncate" else 1)

    second = mount_factory(name="two")
    assert read_file(second, "small.bin") == SMALL
    assert read_file(second, "big.bin") == BIG
    # only the damaged entries came from the registry again
    assert second.stats()["fetch_bytes"] == len(SMALL) + CHUNK_SIZE
    for path, size, good in zip(paths, sizes, (SMALL, BIG[CHUNK_SIZE:2 * CHUNK_SIZE]),
                                strict=True):
        assert path.stat().st_size == size  # written anew, whole
        assert path.read_bytes()[: len(good)] == good
    log = second.log_text()
    assert small_name in log and chunk_name in log  # one line names each damaged entry

    third = mount_factory(name="three")  # after a remount: read from the repaired cache
    assert read_file(third, "small.bin") == SMALL
    assert read_file(third, "big.bin") == BIG
    assert third.stats()["fetch_bytes"] == 0
    assert small_name not in third.log_text()


def test_damage_after_a_checked_read_is_caught_by_the_same_mount(
    dataset: Artifact, config, mount_factory
):
    """A file this daemon already read and found good rots later: its next read from the
    disk cache (the kernel's copy and the daemon's memory both gone) is checked again."""
    mount = mount_factory("--memory", "4")
    assert read_file(mount, "big.bin") == BIG
    assert read_file(mount, "small.bin") == SMALL
    small_name, chunk_name = damaged_names(dataset)
    for name in (small_name, chunk_name):
        flip_byte(cache_file(config.cache_dir, name), 5)
    drop_caches()
    assert read_file(mount, "other.bin") == OTHER  # pushes BIG's chunks out of memory
    before = mount.stats()["fetch_bytes"]
    assert read_file(mount, "big.bin") == BIG
    assert read_file(mount, "small.bin") == SMALL
    fetched = mount.stats()["fetch_bytes"] - before
    assert CHUNK_SIZE <= fetched <= CHUNK_SIZE + len(SMALL)
    assert chunk_name in mount.log_text()
    assert mount.alive()
