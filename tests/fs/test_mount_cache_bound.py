"""The disk cache's bound holds while a mount reads several times more than it."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

from fs.conftest import Mount, drop_caches
from fs.test_mount_readahead import make_data, read_range, sha
from fs.test_mount_tree import push
from helpers import allocated_bytes

from artifactfs.sdk import Api

MIB = 1 << 20
BOUND = 8 * MIB


class Watch:
    """``allocated_bytes`` (what the files take on disk) sampled in a thread as often as it
    can be, until stopped."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.peak = self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, allocated_bytes(self.top))
            self.samples += 1
            self._stop.wait(0.002)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.peak = max(self.peak, allocated_bytes(self.top))


def bounded_mount(env: dict[str, str], tmp_path: Path, mount_factory: Callable[..., Mount],
                  *options: str) -> tuple[Mount, Path]:
    """A mount whose own cache folder may hold ``BOUND`` bytes."""
    cache = tmp_path / "bounded-cache"
    env["ARTIFACTFS_CACHE_DIR"] = str(cache)
    env["ARTIFACTFS_CACHE_SIZE"] = f"{BOUND // MIB}M"
    return mount_factory(*options), cache


def test_reading_five_times_the_bound_keeps_the_cache_under_it(
    api: Api, env: dict[str, str], tmp_path: Path, mount_factory
):
    rng = random.Random(5)
    big = make_data(32, seed=5)
    small = {f"s{d}/f{f:03d}.bin": rng.randbytes(rng.randrange(1, 60_000))
             for d in range(2) for f in range(80)}
    push(api, tmp_path, {"big.bin": big, **small}, aliases=())
    mount, cache = bounded_mount(env, tmp_path, mount_factory)
    base = mount.path / "vision/dataset/mnist:v0"
    names = sorted(small)
    with Watch(cache) as watch:
        assert sha(read_range(base / "big.bin", 0, len(big))) == sha(big)
        for rel in names:
            assert (base / rel).read_bytes() == small[rel], rel
        for rel in reversed(names):  # from memory, the cache or the registry again
            assert (base / rel).read_bytes() == small[rel], rel
    assert mount.stats()["fetch_bytes"] >= len(big) + sum(map(len, small.values()))
    assert watch.samples > 10
    assert 0 < watch.peak <= BOUND, (watch.peak, BOUND)
    assert mount.alive()


def test_evicted_chunks_come_back_exact(
    api: Api, env: dict[str, str], tmp_path: Path, mount_factory
):
    """Read a file three times the bound, drop the kernel's copy, read it again at random
    places: what was evicted (from a 4 MiB memory budget and the 8 MiB cache) is fetched
    again, verified, and exact."""
    data = make_data(24, seed=6)
    push(api, tmp_path, {"big.bin": data}, aliases=())
    mount, cache = bounded_mount(env, tmp_path, mount_factory, "--memory", "4")
    path = mount.path / "vision/dataset/mnist:v0/big.bin"
    assert sha(read_range(path, 0, len(data))) == sha(data)
    drop_caches()
    rng = random.Random(6)
    with Watch(cache) as watch:
        for _ in range(40):
            start = rng.randrange(0, len(data) - 1)
            stop = min(len(data), start + rng.randrange(1, 3 * MIB))
            assert read_range(path, start, stop, block=128 * 1024) == data[start:stop]
    assert mount.stats()["fetch_bytes"] > len(data)  # some of it came from the registry again
    assert watch.peak <= BOUND, (watch.peak, BOUND)
    assert mount.alive()
