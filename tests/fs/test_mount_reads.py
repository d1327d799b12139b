"""Lazy, verified reads through a real mount, and the shared on-disk cache behind them."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import time
from pathlib import Path

import pytest
from fs.conftest import Mount, drop_caches
from fs.test_mount_tree import push

from artifactfs.cache.disk import LAYOUT, TRAILER_SIZE
from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key
from artifactfs.sdk import Api, Artifact

FILES = {
    "small.txt": b"hello, world\n" * 100,
    "big.bin": os.urandom(5 * CHUNK_SIZE + 12345),
    "nested/two.bin": os.urandom(200_000),
}


@pytest.fixture
def dataset(api: Api, tmp_path: Path) -> Artifact:
    return push(api, tmp_path, FILES)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(mount: Mount, label: str = "v0") -> dict[str, bytes]:
    base = mount.path / f"vision/dataset/mnist:{label}"
    return {rel: (base / rel).read_bytes() for rel in FILES}


def cache_objects(config) -> set[str]:
    root = config.cache_dir / LAYOUT
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_every_file_reads_back_byte_for_byte(dataset: Artifact, mounted: Mount):
    got = read_all(mounted)
    for rel, data in FILES.items():
        assert sha(got[rel]) == sha(data), rel


def test_small_read_in_a_1gib_file_fetches_a_few_mib(api: Api, tmp_path: Path, mount_factory):
    src = tmp_path / "huge"
    src.mkdir()
    with open(src / "huge.bin", "wb") as f:  # 1 GiB with a marker in every MiB
        block = bytearray(CHUNK_SIZE)
        for n in range(1024):
            block[:8] = n.to_bytes(8, "big")
            f.write(block)
    art = Artifact("huge", "model")
    art._client = api
    art.add_dir(src)
    art.save(project="vision")
    mount = mount_factory()
    path = mount.path / "vision/model/huge:v0/huge.bin"
    with open(path, "rb") as f:
        f.seek(512 * CHUNK_SIZE + 100_000)
        data = f.read(4096)
    assert data == bytes(4096)
    with open(path, "rb") as f:
        f.seek(700 * CHUNK_SIZE)
        assert f.read(8) == (700).to_bytes(8, "big")
    fetched = mount.stats()["fetch_bytes"]
    assert 0 < fetched <= 4 * CHUNK_SIZE, fetched


def test_corrupted_blob_gives_eio_and_never_enters_the_cache(
    dataset: Artifact, config, mount_factory
):
    manifest = dataset.manifest
    small, big = manifest["small.txt"], manifest["big.bin"]
    blobs = config.store_dir / "blobs"
    for entry, offset in ((small, 10), (big, 2 * CHUNK_SIZE + 7)):
        key = blob_key(entry.digest)
        path = blobs / key[:2] / key
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(offset)
            f.write(bytes([byte[0] ^ 0xFF]))
    mount = mount_factory()
    base = mount.path / "vision/dataset/mnist:v0"
    with pytest.raises(OSError) as info:
        (base / "small.txt").read_bytes()
    assert info.value.errno == errno.EIO
    with open(base / "big.bin", "rb") as f:
        assert f.read(CHUNK_SIZE) == FILES["big.bin"][:CHUNK_SIZE]  # a good chunk reads
        f.seek(2 * CHUNK_SIZE)
        with pytest.raises(OSError) as info:
            f.read(4096)
        assert info.value.errno == errno.EIO
    assert (base / "nested/two.bin").read_bytes() == FILES["nested/two.bin"]
    held = cache_objects(config)
    assert blob_key(small.digest) not in held
    assert f"{blob_key(big.digest)}.c2" not in held
    assert f"{blob_key(big.digest)}.c0" in held
    log = mount.log_text()
    assert "local/vision/mnist:v0" in log and "small.txt" in log and small.digest in log
    assert mount.alive()


def test_remount_reads_from_the_cache_without_fetching(dataset: Artifact, mount_factory):
    first = mount_factory(name="one")
    read_all(first)
    assert first.stats()["fetch_bytes"] >= sum(len(d) for d in FILES.values())
    second = mount_factory(name="two")
    got = read_all(second)
    assert all(got[rel] == data for rel, data in FILES.items())
    stats = second.stats()
    assert stats["fetch_bytes"] == 0
    assert stats["cache_hits"] >= 3


def test_truncated_or_altered_cache_file_is_fetched_again(
    dataset: Artifact, config, mount_factory
):
    read_all(mount_factory(name="one"))
    objects = config.cache_dir / LAYOUT
    small_key = blob_key(dataset.manifest["small.txt"].digest)
    big_key = blob_key(dataset.manifest["big.bin"].digest)
    small_file = objects / small_key[:2] / small_key
    os.truncate(small_file, 10)
    chunk_file = objects / big_key[:2] / f"{big_key}.c1"
    data = bytearray(chunk_file.read_bytes())
    data[5] ^= 1
    chunk_file.write_bytes(bytes(data))
    second = mount_factory(name="two")
    got = read_all(second)
    assert got["small.txt"] == FILES["small.txt"]
    assert got["big.bin"] == FILES["big.bin"]
    assert second.stats()["fetch_bytes"] == len(FILES["small.txt"]) + CHUNK_SIZE
    assert small_file.read_bytes()[:-TRAILER_SIZE] == FILES["small.txt"]  # repaired


def test_rereads_are_served_by_the_kernel(dataset: Artifact, mounted: Mount):
    path = mounted.path / "vision/dataset/mnist:v0/big.bin"
    assert path.read_bytes() == FILES["big.bin"]
    before = mounted.stats()["read_requests"]
    assert before > 0
    for _ in range(3):
        assert path.read_bytes() == FILES["big.bin"]
    assert mounted.stats()["read_requests"] == before


def test_unreachable_store_gives_eio_within_the_timeout_and_cached_files_still_read(
    dataset: Artifact, config, mount_factory
):
    mount = mount_factory("--read-timeout", "2")
    base = mount.path / "vision/dataset/mnist:v0"
    assert (base / "small.txt").read_bytes() == FILES["small.txt"]  # now cached
    key = blob_key(dataset.manifest["nested/two.bin"].digest)
    blob = config.store_dir / "blobs" / key[:2] / key
    blob.unlink()
    os.mkfifo(blob)  # opening it blocks forever: a store that does not answer
    try:
        started = time.monotonic()
        with pytest.raises(OSError) as info:
            (base / "nested/two.bin").read_bytes()
        assert info.value.errno == errno.EIO
        assert time.monotonic() - started < 30  # it failed; it did not hang
        drop_caches()
        assert (base / "small.txt").read_bytes() == FILES["small.txt"]
        assert mount.alive()
    finally:
        for _ in range(8):  # release the worker threads stuck opening the fifo
            with contextlib.suppress(OSError):
                os.close(os.open(blob, os.O_WRONLY | os.O_NONBLOCK))
        assert stat.S_ISFIFO(os.stat(blob).st_mode)
