"""``artifactfs cache clear`` and ``cache prune`` while a real mount reads from the cache.

The mount and the command are separate processes sharing the cache folder, as on a user's
machine. Reads go on throughout, each file's pages dropped from the kernel's page cache
before and after it is read (``posix_fadvise``), and with a 4 MiB memory budget, so that
every read reaches the daemon and its disk cache: files there, files removed under it, files
removed while open. Every read must return the pushed bytes, the daemon must have served
some reads from the disk cache and fetched the removed ones again, and ``cache info`` must
count the mount's hits.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from fs.conftest import Mount
from fs.test_mount_tree import push

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.sdk import Api

pytestmark = pytest.mark.mount

FILES = {
    **{f"small/{i:02}.bin": os.urandom(60_000 + i) for i in range(12)},
    "big/a.bin": os.urandom(3 * CHUNK_SIZE + 5_000),
    "big/b.bin": os.urandom(2 * CHUNK_SIZE + 77),
}


def read_uncached(path: Path) -> bytes:
    """The file's bytes as the daemon serves them now, not as the page cache kept them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        chunks = []
        while block := os.read(fd, 1 << 20):
            chunks.append(block)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return b"".join(chunks)
    finally:
        os.close(fd)


def cache_files(cache_dir: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(cache_dir / "objects.v2"))


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_clearing_and_pruning_the_cache_while_a_mount_reads(
    api: Api, tmp_path: Path, config, mount_factory, run_cli
) -> None:
    push(api, tmp_path, FILES, aliases=())
    mount: Mount = mount_factory("--memory", "4", "--prefetch-files", "0")
    version = mount.path / "vision/dataset/mnist:v0"
    for rel, data in FILES.items():  # the cache filled once
        assert read_uncached(version / rel) == data
    assert cache_files(config.cache_dir) >= len(FILES)
    warm = mount.stats()

    wrong: list[str] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            for rel, data in FILES.items():
                if read_uncached(version / rel) != data:
                    wrong.append(rel)
                reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    removed = 0
    try:
        deadline = time.monotonic() + 3
        rounds = 0
        while time.monotonic() < deadline or rounds < 4:
            args = ("cache", "clear") if rounds % 2 == 0 else ("cache", "prune", "--to", "1M")
            done = run_cli(*args)
            assert done.returncode == 0, done.stderr
            removed += int(done.stdout.split()[1])
            rounds += 1
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert not wrong, f"wrong bytes read from {sorted(set(wrong))}"
    assert reads > 2 * len(FILES)
    assert removed > 0  # the commands did remove files the mount was using
    stats = mount.stats()
    assert stats["cache_hits"] > warm["cache_hits"]  # some reads came from the disk cache
    assert stats["fetch_requests"] > warm["fetch_requests"]  # and removed ones were fetched
    assert stats["cache_damaged"] == 0
    assert mount.alive()

    info = run_cli("cache", "info", "--json")
    assert info.returncode == 0, info.stderr
    shown = json.loads(info.stdout)
    assert [m["mountpoint"] for m in shown["mounts"]] == [str(mount.path)]
    assert shown["mounts"][0]["hits"] >= stats["cache_hits"]
    assert 0 < shown["hit_rate"] < 1
    assert shown["files"] == cache_files(config.cache_dir)
    assert "Traceback" not in mount.log_text()
