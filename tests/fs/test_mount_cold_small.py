"""Cold reads under no-open (a ``--read-only`` mount): small files in shuffled order, and the
request size of a big file read in order (issue 16, items 2 and 3).

A training job's epoch 0 reads every file once, in shuffled order, with the page cache and
the artifactfs cache empty. Each file must cross from the registry once, MD5-checked, and be
answered without being read back from the disk cache; files fetched ahead in batches (the
folder sweep) must still be refused when their bytes are bad.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from pathlib import Path

import pyfuse3
import pytest
from fs.conftest import Mount, drop_caches
from fs.test_mount_tree import push

from artifactfs.cache import ContentCache
from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.sdk import Api
from artifactfs.store import Store

PATCHED = bool(getattr(pyfuse3, "NO_HANDLE_READ_GIVES_INODE", False))
pytestmark = pytest.mark.skipif(not PATCHED, reason="pyfuse3 without the project's patch")

MIB = 1 << 20


def small_files(count: int, folders: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"d{i % folders}/f{i:04d}.bin": rng.randbytes(20_000 + i) for i in range(count)}


def read_shuffled(base: Path, rels: list[str], readers: int, seed: int
                  ) -> tuple[dict[str, bytes], dict[str, int]]:
    """Read every file whole in one shuffled order shared out to ``readers`` threads: the
    bytes of each, and the errno of each read that failed."""
    order = list(rels)
    random.Random(seed).shuffle(order)
    got: dict[str, bytes] = {}
    failed: dict[str, int] = {}

    def read(part: list[str]) -> None:
        for rel in part:
            try:
                got[rel] = (base / rel).read_bytes()
            except OSError as exc:
                failed[rel] = exc.errno or 0

    threads = [threading.Thread(target=read, args=(order[i::readers],))
               for i in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a reader hung"
    return got, failed


def counters(mount: Mount) -> dict[str, int]:
    stats = mount.stats()
    return {k: int(stats[k]) for k in ("fetch_requests", "fetch_bytes", "cache_hits")}


def test_a_shuffled_cold_epoch_fetches_each_small_file_once_and_mostly_in_batches(
    api: Api, tmp_path: Path, transport: str, mount_factory
):
    """More files than the mount's memory holds (4.8 MB, --memory 2): the folder sweep
    keeps what fits in memory until read and sends the rest to the disk cache, in batches,
    each blob fetched once and checked once."""
    files = small_files(240, 3, seed=1)
    push(api, tmp_path, files, aliases=())
    mount = mount_factory("--read-only", "--memory", "2")
    base = mount.path / "vision/dataset/mnist:v0"
    rels = sorted(str(p.relative_to(base)) for p in base.rglob("*.bin"))  # the job's index
    assert rels == sorted(files)
    drop_caches()
    before = counters(mount)
    got, failed = read_shuffled(base, rels, readers=4, seed=2)
    after = counters(mount)
    assert failed == {}
    assert all(got[rel] == data for rel, data in files.items())
    seen = {k: after[k] - before[k] for k in after}
    assert seen["fetch_bytes"] == sum(map(len, files.values())), seen  # each blob once
    # nearly all in the sweeps' batches (13 requests here; 24 with the window after each
    # file, whose batches the readers outran)
    assert seen["fetch_requests"] < len(files) // 10, seen
    requests = mount.stats()["requests"]
    # no-open: the first opens of the 4 readers may all reach the daemon before the first
    # ENOSYS is answered (the kernel stops sending OPEN only then); none after that
    assert requests.get("open", 0) <= 4 and requests.get("release", 0) == 0
    if transport == "server":
        log = (tmp_path / "server.log").read_text()
        sent = log.count("POST /api/v1/blobs/batch") + log.count("GET /api/v1/blobs/")
        assert sent < len(files) // 10, sent


def test_a_bad_blob_fetched_ahead_in_a_sweep_is_refused_and_never_cached(
    api: Api, tmp_path: Path, mount_factory
):
    files = small_files(90, 1, seed=3)
    push(api, tmp_path, files, aliases=())
    bad = "d0/f0042.bin"
    digest = md5_b64(files[bad])
    blob = Store(tmp_path / "store").blobs.path(digest)
    with open(blob, "r+b") as f:  # bit rot in the registry's own copy
        f.seek(100)
        byte = f.read(1)[0]
        f.seek(100)
        f.write(bytes([byte ^ 0x01]))
    mount = mount_factory("--read-only")
    base = mount.path / "vision/dataset/mnist:v0"
    rels = sorted(files)
    drop_caches()
    got, failed = read_shuffled(base, rels, readers=3, seed=4)
    assert failed == {bad: errno.EIO}
    assert all(got[rel] == files[rel] for rel in rels if rel != bad)
    cache = ContentCache(tmp_path / "cache", 1 << 30)
    assert not cache.path(blob_key(digest)).exists()
    assert all(cache.path(blob_key(md5_b64(files[rel]))).exists() for rel in rels if rel != bad)
    assert "failed its digest check" in mount.log_text()
    with pytest.raises(OSError) as info:  # asked again: refused again, not served
        (base / bad).read_bytes()
    assert info.value.errno == errno.EIO


def test_a_big_file_read_in_order_comes_in_1_mib_requests(
    api: Api, tmp_path: Path, mount_factory
):
    """The kernel sends READs as large as its read-ahead on the mount and max_pages allow:
    libfuse 3.14 offers 256 pages (1 MiB) and the daemon raises read_ahead_kb past it after
    INIT. With the FUSE default read-ahead (128 KiB) the same read took eight times as
    many requests."""
    data = random.Random(5).randbytes(24 * CHUNK_SIZE)
    push(api, tmp_path, {"big.bin": data}, aliases=())
    mount = mount_factory("--read-only")
    path = mount.path / "vision/dataset/mnist:v0/big.bin"
    os.stat(path)
    drop_caches()
    before = mount.stats()["requests"].get("read", 0)
    with open(path, "rb", buffering=0) as f:
        got = bytearray()
        while block := f.read(MIB):
            got += block
    assert bytes(got) == data
    reads = mount.stats()["requests"]["read"] - before
    assert reads <= len(data) // MIB + 2, reads
