"""The shared, bounded, content-addressed cache (artifactfs.cache.ContentCache)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest
from helpers import folder_bytes, open_fd_count, wait_until

from artifactfs.cache import ContentCache
from artifactfs.store import files
from artifactfs.store.files import write_atomically


def _name(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _check_for(data: bytes):
    digest = hashlib.md5(data).digest()
    return lambda got: hashlib.md5(got).digest() == digest


def _blob(i: int, size: int = 1000) -> bytes:
    return (f"blob {i:06d} ".encode() * (size // 12 + 1))[:size]


@pytest.fixture
def cache(tmp_path: Path) -> ContentCache:
    return ContentCache(tmp_path / "cache", max_bytes=1 << 20)


def _age(cache: ContentCache, name: str, seconds_ago: float) -> None:
    """Mark ``name`` as last used ``seconds_ago`` (recency is the file's atime).

    Waits first for the scan the first put started: a scan that reads some files' times
    before they are set and others' after ranks them in an order no reader ever made."""
    wait_until(lambda: not cache._scanning)
    path = cache.path(name)
    st = path.stat()
    when = time.time_ns() - int(seconds_ago * 1e9)
    os.utime(path, ns=(when, st.st_mtime_ns))


def test_put_then_get(cache: ContentCache) -> None:
    data = b"some verified bytes"
    name = _name(data)
    assert not cache.contains(name)
    cache.put(name, data)
    assert cache.contains(name)
    assert cache.path(name) == cache.root / "objects" / name[:2] / name
    assert cache.path(name).read_bytes() == data
    assert cache.get(name, _check_for(data)) == data
    assert cache.get(name, _check_for(data)) == data
    assert cache.hits == 2
    assert cache.usage() == len(data)


def test_put_accepts_memoryview_and_empty(cache: ContentCache) -> None:
    cache.put("aa-view", memoryview(b"view bytes"))
    assert cache.get("aa-view", lambda d: d == b"view bytes") == b"view bytes"
    cache.put("bb-empty", b"")
    assert cache.get("bb-empty", lambda d: d == b"") == b""


def test_get_of_a_missing_name_is_a_miss(cache: ContentCache) -> None:
    assert cache.get("00deadbeef", lambda d: True) is None
    assert cache.misses == 1
    assert cache.hits == 0


def _unstamp(cache: ContentCache, name: str) -> None:
    """Forget that ``put`` verified the file (as for a file from an older cache)."""
    os.removexattr(cache.path(name), "user.artifactfs.verified")


def test_failed_check_removes_the_file(cache: ContentCache) -> None:
    cache.put("abc", b"bytes")
    _unstamp(cache, "abc")
    assert cache.get("abc", lambda d: False) is None
    assert not cache.path("abc").exists()
    assert cache.get("abc", lambda d: True) is None
    assert cache.misses == 2


def test_truncated_file_is_detected(cache: ContentCache) -> None:
    data = os.urandom(5000)
    name = _name(data)
    cache.put(name, data)
    assert cache.get(name, _check_for(data)) == data  # checked once by this process
    with open(cache.path(name), "r+b") as f:
        f.truncate(4000)
    assert cache.get(name, _check_for(data)) is None
    assert not cache.path(name).exists()
    assert not cache.contains(name)


def test_truncated_to_empty_is_detected(cache: ContentCache) -> None:
    data = os.urandom(100)
    name = _name(data)
    cache.put(name, data)
    cache.path(name).write_bytes(b"")
    assert cache.get(name, _check_for(data)) is None
    assert not cache.path(name).exists()


def test_altered_file_is_detected(cache: ContentCache) -> None:
    data = os.urandom(5000)
    name = _name(data)
    cache.put(name, data)
    path = cache.path(name)
    altered = bytearray(data)
    altered[1234] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(altered)
    assert cache.get(name, _check_for(data)) is None
    assert not path.exists()


def _open_fds(cache: ContentCache) -> int:
    """Files this process has open, once the scan the first put started (which opens files
    of its own) is over."""
    wait_until(lambda: not cache._scanning)
    return open_fd_count()


def test_get_many_answers_like_get_and_leaves_no_file_open(cache: ContentCache) -> None:
    blobs = [os.urandom(3000 + i) for i in range(6)]
    for data in blobs:
        cache.put(_name(data), data)
    bad = blobs[2]
    with open(cache.path(_name(bad)), "r+b") as f:
        f.write(b"\x00" * 10)  # altered (a fresh mtime): found bad on the next read
    names = [_name(d) for d in blobs] + ["0" * 32]  # the last one was never cached
    before = _open_fds(cache)
    got = cache.get_many(names, [_check_for(d) for d in blobs] + [lambda _: True])
    assert _open_fds(cache) == before
    assert got == [blobs[0], blobs[1], None, *blobs[3:], None]
    assert not cache.contains(_name(bad))  # dropped, to be fetched again
    assert cache.misses == 2


def test_get_many_closes_every_file_when_a_check_raises(cache: ContentCache) -> None:
    blobs = [os.urandom(2000 + i) for i in range(4)]
    for data in blobs:
        cache.put(_name(data), data)
    cache.path(_name(blobs[1])).write_bytes(b"changed")  # so its check runs and raises

    def explode(_: bytes) -> bool:
        raise RuntimeError("check failed to run")

    before = _open_fds(cache)
    with pytest.raises(RuntimeError):
        cache.get_many([_name(d) for d in blobs], [explode] * len(blobs))
    assert _open_fds(cache) == before


def test_file_altered_after_a_checked_read_is_detected(cache: ContentCache) -> None:
    data = os.urandom(5000)
    name = _name(data)
    cache.put(name, data)
    assert cache.get(name, _check_for(data)) == data
    path = cache.path(name)
    st = path.stat()
    altered = bytearray(data)
    altered[0] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(altered)
    # the change happened later than the checked read (made explicit: clocks are coarse)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert cache.get(name, _check_for(data)) is None
    assert not path.exists()


def test_file_replaced_by_another_process_is_detected(cache: ContentCache) -> None:
    data = os.urandom(3000)
    name = _name(data)
    cache.put(name, data)
    assert cache.get(name, _check_for(data)) == data
    other = ContentCache(cache.root, cache.max_bytes)
    path = cache.path(name)
    bad = os.urandom(3000)
    tmp = path.with_name("replacement")
    tmp.write_bytes(bad)
    os.replace(tmp, path)  # a new inode under the same name
    assert other.get(name, _check_for(data)) is None
    assert not path.exists()
    assert cache.get(name, _check_for(data)) is None


def test_check_sees_the_bytes_on_disk(cache: ContentCache) -> None:
    cache.put("f00d", b"abc")
    _unstamp(cache, "f00d")
    seen: list[bytes] = []

    def check(data: bytes) -> bool:
        seen.append(data)
        return True

    assert cache.get("f00d", check) == b"abc"
    assert seen == [b"abc"]


def test_put_replaces_and_is_checked_again(cache: ContentCache) -> None:
    cache.put("cafe", b"one")
    _unstamp(cache, "cafe")
    assert cache.get("cafe", lambda d: d == b"one") == b"one"
    cache.put("cafe", b"two")
    _unstamp(cache, "cafe")
    assert cache.path("cafe").read_bytes() == b"two"
    # the new file is checked on its first read, not trusted from the old one's check
    assert cache.get("cafe", lambda d: d == b"one") is None
    assert not cache.contains("cafe")


def test_a_new_process_trusts_the_stamp_of_an_unchanged_file(tmp_path: Path) -> None:
    first = ContentCache(tmp_path / "cache", max_bytes=1 << 20)
    first.put("beef", b"verified once")
    later = ContentCache(tmp_path / "cache", max_bytes=1 << 20)  # as after a restart
    checks: list[bytes] = []
    assert later.get("beef", lambda d: checks.append(d) or True) == b"verified once"
    assert checks == []  # not hashed again


def test_the_stamp_does_not_cover_a_rewritten_file(tmp_path: Path) -> None:
    first = ContentCache(tmp_path / "cache", max_bytes=1 << 20)
    first.put("beef", b"verified once")
    path = first.path("beef")
    stamp = os.getxattr(path, "user.artifactfs.verified")
    time.sleep(0.05)
    path.write_bytes(b"verified twice")  # same inode, new size and mtime
    assert os.getxattr(path, "user.artifactfs.verified") == stamp  # the attribute survives
    later = ContentCache(tmp_path / "cache", max_bytes=1 << 20)
    assert later.get("beef", lambda d: d == b"verified once") is None
    assert not path.exists()


def test_discard(cache: ContentCache) -> None:
    cache.put("beef", b"x" * 10)
    cache.discard("beef")
    assert not cache.contains("beef")
    cache.discard("beef")  # twice is fine
    assert cache.usage() == 0


def test_no_temporary_files_are_left(cache: ContentCache) -> None:
    for i in range(20):
        cache.put(_name(_blob(i)), _blob(i))
    assert list((cache.root / "tmp").iterdir()) == []


def test_cache_survives_a_restart(tmp_path: Path) -> None:
    first = ContentCache(tmp_path / "c", max_bytes=1 << 20)
    first.put("a1b2", b"kept")
    second = ContentCache(tmp_path / "c", max_bytes=1 << 20)
    assert second.get("a1b2", lambda d: d == b"kept") == b"kept"


# ---- bound and eviction -----------------------------------------------------------------


def test_usage_stays_under_the_bound(tmp_path: Path) -> None:
    bound = 10_000
    cache = ContentCache(tmp_path / "cache", max_bytes=bound)
    written = 0
    for i in range(60):
        data = _blob(i, 1000)
        cache.put(_name(data), data)
        written += len(data)
        assert cache.usage() <= bound
    assert written > 5 * bound
    assert cache.usage() > 0
    newest = _blob(59, 1000)
    assert cache.get(_name(newest), _check_for(newest)) == newest


def test_reading_more_than_the_bound_keeps_it(tmp_path: Path) -> None:
    """Objects of mixed sizes, some of them read again, never hold more than the bound."""
    bound = 50_000
    cache = ContentCache(tmp_path / "cache", max_bytes=bound)
    sizes = [700, 3000, 12_000, 1, 9000, 25_000]
    for i in range(40):
        data = _blob(i, sizes[i % len(sizes)])
        cache.put(_name(data), data)
        if i >= 3:
            old = _blob(i - 3, sizes[(i - 3) % len(sizes)])
            cache.get(_name(old), _check_for(old))
        assert cache.usage() <= bound


def test_object_larger_than_the_bound_does_not_stay(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=1000)
    cache.put("small", b"s" * 100)
    cache.put("large", b"L" * 5000)
    assert cache.usage() <= 1000


def test_the_bound_holds_at_every_moment_with_puts_from_many_threads(tmp_path: Path) -> None:
    """Room is made before a write, so not even a write in flight takes the folder past the
    bound (the old order, write and then evict, overshot by the objects in flight)."""
    bound = 40_000
    cache = ContentCache(tmp_path / "cache", max_bytes=bound)
    stop = threading.Event()
    peak = 0

    def watch() -> None:
        # a walk is not a snapshot: it could count a file that an eviction then removed and
        # also the write that the eviction made room for. Holding the eviction lock while it
        # walks, nothing is removed meanwhile, so what it counts was all there at once.
        nonlocal peak
        with open(tmp_path / "cache" / "evict.lock", "a") as lock:
            while not stop.is_set():
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    peak = max(peak, folder_bytes(tmp_path / "cache"))
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
                time.sleep(0.001)  # let the writers' evictions have the lock in turn

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(60):
            data = _blob(seed * 1000 + i, rng.randrange(500, 6000))
            cache.put(_name(data), data)

    watcher = threading.Thread(target=watch)
    watcher.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    watcher.join()
    assert 0 < peak <= bound
    assert 0 < cache.usage() <= bound


def test_an_object_larger_than_the_bound_is_not_written(tmp_path: Path) -> None:
    """Nothing is written for it, and nothing evicted to make room it could never have
    (writing it first and evicting after emptied the cache of everything else)."""
    cache = ContentCache(tmp_path / "cache", max_bytes=1000)
    cache.put("small", b"s" * 100)
    cache.put("large", b"L" * 5000)
    assert not cache.contains("large")
    assert cache.get("small", lambda d: d == b"s" * 100) == b"s" * 100
    assert folder_bytes(tmp_path / "cache") == 100


def test_a_failed_write_gives_its_room_back(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=5000)
    (cache.objects / "ab").write_bytes(b"")  # a file where a fan-out folder should be
    for i in range(20):  # 20,000 bytes of writes that fail
        cache.put(f"ab{i:030d}", _blob(i, 1000))
    data = _blob(99, 1000)
    cache.put(_name(data), data)
    assert cache.get(_name(data), _check_for(data)) == data
    assert list(cache.tmp.iterdir()) == []


def test_a_failing_eviction_leaves_bytes_uncached_and_the_put_unharmed(tmp_path: Path) -> None:
    """A read that fetched verified bytes must not fail because the cache could not make
    room for them (here the eviction lock cannot be opened: a folder stands in its place)."""
    cache = ContentCache(tmp_path / "cache", max_bytes=3000)
    kept = [_blob(i, 1000) for i in range(2)]
    for data in kept:
        cache.put(_name(data), data)
    wait_until(lambda: cache._usage is not None)  # the first scan, started by the first put
    cache.evict()  # and a count of what is on disk that no put overlapped
    lock = tmp_path / "cache" / "evict.lock"
    lock.unlink()
    lock.mkdir()
    large = _blob(8, 1500)
    cache.put(_name(large), large)  # 3,500 bytes would need an eviction
    assert not cache.contains(_name(large))
    small = _blob(9, 500)
    cache.put(_name(small), small)  # fits as it is: the failed put gave its room back
    assert cache.get(_name(small), _check_for(small)) == small
    assert all(cache.get(_name(d), _check_for(d)) == d for d in kept)
    assert folder_bytes(tmp_path / "cache") == 2500


def test_eviction_removes_the_least_recently_used_first(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=4500)
    blobs = {k: _blob(i, 1000) for i, k in enumerate("abcd")}
    for data in blobs.values():
        cache.put(_name(data), data)
    assert cache.usage() == 4000
    # a was used longest ago, then b, c, d
    for age, k in zip((4000, 3000, 2000, 1000), "abcd", strict=True):
        _age(cache, _name(blobs[k]), age)
    extra = _blob(99, 1000)
    cache.put(_name(extra), extra)  # 5000 > 4500: evict down to 90%
    present = {k for k, data in blobs.items() if cache.contains(_name(data))}
    assert present == {"b", "c", "d"}
    assert cache.contains(_name(extra))
    assert cache.usage() <= 4500


def test_a_hit_makes_an_object_recently_used(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=4500)
    blobs = {k: _blob(i, 1000) for i, k in enumerate("abcd")}
    for data in blobs.values():
        cache.put(_name(data), data)
    for age, k in zip((4000, 3000, 2000, 1000), "abcd", strict=True):
        _age(cache, _name(blobs[k]), age)
    assert cache.get(_name(blobs["a"]), _check_for(blobs["a"])) == blobs["a"]
    extra = _blob(99, 1000)
    cache.put(_name(extra), extra)
    present = {k for k, data in blobs.items() if cache.contains(_name(data))}
    assert present == {"a", "c", "d"}  # b is now the least recently used


def test_eviction_goes_on_in_order_of_last_use(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=6000)
    blobs = [_blob(i, 1000) for i in range(6)]
    for data in blobs:
        cache.put(_name(data), data)
    order = [3, 0, 5, 1, 4, 2]  # least recently used first
    for rank, i in enumerate(order):
        _age(cache, _name(blobs[i]), 10_000 - rank * 100)
    big = _blob(50, 2500)
    cache.put(_name(big), big)  # 8500 > 6000: down to 5400 or less -> drop 4 objects
    present = [i for i, data in enumerate(blobs) if cache.contains(_name(data))]
    assert sorted(present) == sorted(order[4:])
    assert cache.contains(_name(big))


def test_two_caches_on_one_folder_share_the_bound(tmp_path: Path) -> None:
    one = ContentCache(tmp_path / "cache", max_bytes=8000)
    two = ContentCache(tmp_path / "cache", max_bytes=8000)
    for i in range(30):
        data = _blob(i, 1000)
        (one if i % 2 else two).put(_name(data), data)
    one.evict()
    assert one.usage() <= 8000
    assert two.usage() == one.usage()


def test_write_atomically_leaves_only_the_finished_file(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dest = tmp_path / "dest"
    dest.write_bytes(b"old")
    seen: list[int] = []

    def stamp(fd: int) -> None:  # runs once every byte is written, before the rename
        seen.append(os.fstat(fd).st_size)
        assert dest.read_bytes() == b"old"

    write_atomically(str(dest), memoryview(b"new bytes"), tmp_dir=str(tmp), before_rename=stamp)
    assert dest.read_bytes() == b"new bytes"
    assert seen == [9]
    assert list(tmp.iterdir()) == []


def test_write_atomically_cleans_up_when_it_fails(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dest = tmp_path / "dest"

    def refuse(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomically(str(dest), b"x" * 1000, tmp_dir=str(tmp), before_rename=refuse)
    with pytest.raises(FileNotFoundError):  # the folder of dest is missing: nothing is left
        write_atomically(str(tmp_path / "no" / "dest"), b"x", tmp_dir=str(tmp))
    assert not dest.exists()
    assert list(tmp.iterdir()) == []


def test_write_atomically_steps_over_names_a_dead_process_left(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # the next temporary names this process would use, taken by stale files
    upcoming = next(files._NEXT) + 1
    stale = [tmp / f".tmp-{files._RUN}-{os.getpid()}-{n}" for n in range(upcoming, upcoming + 3)]
    for path in stale:
        path.write_bytes(b"stale")
    write_atomically(str(tmp_path / "dest"), b"fresh", tmp_dir=str(tmp))
    assert (tmp_path / "dest").read_bytes() == b"fresh"
    assert sorted(tmp.iterdir()) == sorted(stale)
