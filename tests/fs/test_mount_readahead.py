"""Read-ahead through a real mount: sequential runs are batched, random reads stay small."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fs.conftest import Mount, drop_caches
from fs.test_mount_tree import push
from scale_out import scale_out

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.sdk import Api

MIB = 1 << 20
TAIL = 12_345  # a partial last chunk


def make_data(chunks: int, seed: int) -> bytes:
    """``chunks`` full chunks of seeded random bytes (each one distinct) plus a short tail."""
    return random.Random(seed).randbytes(chunks * CHUNK_SIZE + TAIL)


def push_big(api: Api, tmp_path: Path, data: bytes) -> str:
    """Push ``data`` as the only file of a dataset; return its path inside a mount."""
    push(api, tmp_path, {"big.bin": data}, aliases=())
    return "vision/dataset/mnist:v0/big.bin"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_range(path: Path, start: int, stop: int, block: int = CHUNK_SIZE) -> bytes:
    """Bytes ``[start, stop)`` of ``path``, read in order in blocks of ``block`` bytes."""
    out = bytearray()
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        while len(out) < stop - start:
            got = f.read(min(block, stop - start - len(out)))
            if not got:
                break
            out += got
    return bytes(out)


def run_threads(target: Callable[[Any], None], args: list[Any], timeout: float
                ) -> list[threading.Thread]:
    """One thread per argument, all started, then each waited for up to ``timeout``."""
    threads = [threading.Thread(target=target, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    return threads


def vm_hwm_bytes(pid: int) -> int:
    """Peak resident memory of process ``pid`` (VmHWM in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def read_all_once(
    api: Api, tmp_path: Path, mount_factory, seed: int, *mount_args: str
) -> tuple[Mount, dict, bytes]:
    """Push 48 chunks and a tail, mount with ``mount_args`` and read it all in order: the
    bytes must be exact and fetched about once. Returns the mount, its stats and the data."""
    data = make_data(48, seed=seed)
    rel = push_big(api, tmp_path, data)
    mount: Mount = mount_factory(*mount_args)
    got = read_range(mount.path / rel, 0, len(data))
    assert len(got) == len(data)
    assert sha(got) == sha(data)
    stats = mount.stats()
    assert len(data) <= stats["fetch_bytes"] <= len(data) + 4 * MIB, stats
    return mount, stats, data


def test_sequential_read_is_exact_and_fetched_in_batched_runs(
    api: Api, tmp_path: Path, mount_factory
):
    mount, stats, data = read_all_once(api, tmp_path, mount_factory, 1)
    chunks = -(-len(data) // CHUNK_SIZE)
    assert 0 < stats["fetch_requests"] <= chunks // 3 + 3, stats
    assert mount.alive()


def test_random_small_reads_fetch_only_their_own_chunks(
    api: Api, tmp_path: Path, mount_factory
):
    data = make_data(64, seed=2)
    rel = push_big(api, tmp_path, data)
    mount: Mount = mount_factory()
    drop_caches()
    rng = random.Random(1234)
    offsets = [rng.randrange(0, len(data) - 4096) for _ in range(30)]
    with open(mount.path / rel, "rb", buffering=0) as f:
        for offset in offsets:
            f.seek(offset)
            assert f.read(4096) == data[offset : offset + 4096], offset
    touched = {n for offset in offsets for n in {offset // CHUNK_SIZE,
                                                   (offset + 4095) // CHUNK_SIZE}}
    stats = mount.stats()
    assert 0 < stats["fetch_bytes"] <= (len(touched) + 2) * CHUNK_SIZE, (stats, len(touched))
    assert mount.alive()


def test_mixed_sequential_and_seeking_reads_return_the_right_bytes(
    api: Api, tmp_path: Path, mounted: Mount
):
    data = make_data(40, seed=3)
    path = mounted.path / push_big(api, tmp_path, data)
    middle = len(data) // 2
    segments = [
        (0, 8 * MIB),  # sequential start
        (middle, middle + 4 * MIB),  # seek back to the middle
        (len(data) - MIB - TAIL, len(data)),  # the last chunk and the tail
        (0, len(data)),  # the whole file again, in order
    ]
    for start, stop in segments:
        got = read_range(path, start, stop, block=256 * 1024)
        assert sha(got) == sha(data[start:stop]), (start, stop)
    # the same pattern on one handle, so the daemon sees the seeks on one read-ahead state
    with open(path, "rb", buffering=0) as f:
        for start, stop in segments:
            f.seek(start)
            got = f.read(stop - start)
            assert sha(got) == sha(data[start:stop]), (start, stop)
    assert mounted.alive()


def test_concurrent_readers_from_different_offsets_get_the_right_bytes(
    api: Api, tmp_path: Path, mounted: Mount
):
    data = make_data(40, seed=4)
    path = mounted.path / push_big(api, tmp_path, data)
    starts = [0, 17 * CHUNK_SIZE + 4321, 31 * CHUNK_SIZE]
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(starts))

    def reader(start: int) -> None:
        try:  # each thread has its own handle: from ``start`` to the end, then wrap around
            barrier.wait(timeout=30)
            got = read_range(path, start, len(data)) + read_range(path, 0, start)
            results[start] = sha(got)
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)

    run_threads(reader, starts, timeout=240)
    assert not errors, errors
    for start in starts:
        assert results.get(start) == sha(data[start:] + data[:start]), start
    stats = mounted.stats()
    assert len(data) <= stats["fetch_bytes"] <= len(data) + 16 * MIB, stats
    assert mounted.alive()


def test_small_memory_budget_reads_exactly_and_stays_bounded(
    api: Api, tmp_path: Path, mount_factory
):
    mount, stats, _ = read_all_once(api, tmp_path, mount_factory, 5, "--memory", "8")
    assert stats["pid"] == mount.pid
    assert vm_hwm_bytes(stats["pid"]) < 400 * MIB
    assert mount.alive()


@scale_out
def test_small_files_read_in_listing_order_are_exact_and_fetched_in_batches(
    api: Api, tmp_path: Path, transport: str, mount_factory
):
    rng = random.Random(7)
    files = {
        f"d{d}/f{f:03d}.bin": rng.randbytes(rng.randrange(1, 70_000))
        for d in range(3) for f in range(60)
    }
    files["d1/empty.bin"] = b""
    push(api, tmp_path, files, aliases=())
    mount = mount_factory()
    base = mount.path / "vision/dataset/mnist:v0"
    names = sorted(files)  # the listing order the daemon prefetches in
    got = {rel: (base / rel).read_bytes() for rel in names}
    assert all(sha(got[rel]) == sha(files[rel]) for rel in names)
    assert mount.stats()["fetch_bytes"] == sum(map(len, files.values()))  # each blob once
    if transport != "embedded":  # a server's log: the blobs came in batches
        log = (tmp_path / "server.log").read_text()
        batches = log.count("POST /api/v1/blobs/batch")
        singles = log.count("GET /api/v1/blobs/")
        assert batches >= 3 and singles < len(files) // 4, (batches, singles)


def test_small_files_read_while_their_prefetch_runs_never_hang_or_mix(
    api: Api, tmp_path: Path, mount_factory
):
    """Several readers open the same files at once, in different orders, while the
    daemon's batches for those files are in flight: each gets its own file's bytes."""
    rng = random.Random(11)
    files = {f"d/f{f:03d}.bin": rng.randbytes(5000 + f) for f in range(120)}
    push(api, tmp_path, files, aliases=())
    mount = mount_factory()
    base = mount.path / "vision/dataset/mnist:v0"
    names = sorted(files)
    orders = [names, names[::-1], rng.sample(names, len(names)), names[60:] + names[:60]]
    bad: list[str] = []

    def reader(order: list[str]) -> None:
        for rel in order:
            if (base / rel).read_bytes() != files[rel]:
                bad.append(rel)

    threads = run_threads(reader, orders, timeout=120)
    assert not any(t.is_alive() for t in threads), "a reader hung"
    assert bad == []
