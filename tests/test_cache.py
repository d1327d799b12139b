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
from helpers import allocated_bytes, folder_bytes, open_fd_count, wait_until

from artifactfs import files
from artifactfs.cache import ContentCache
from artifactfs.cache.disk import LAYOUT, TRAILER_SIZE
from artifactfs.files import write_atomically


def _name(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _blob(i: int, size: int = 1000) -> bytes:
    return (f"blob {i:06d} ".encode() * (size // 12 + 1))[:size]


def _filling(i: int, on_disk: int) -> bytes:
    """A blob whose cache file takes ``on_disk`` bytes, trailer included."""
    return _blob(i, on_disk - TRAILER_SIZE)


def _rot(path: Path, offset: int) -> None:
    """Flip one bit at ``offset`` and put the file's times back, as bit rot leaves it."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture
def cache(tmp_path: Path) -> ContentCache:
    # the tests of this file count a file by its length (block_size=1), so that their sizes
    # are exact; counting in the file system's blocks has tests of its own (below)
    return ContentCache(tmp_path / "cache", max_bytes=1 << 20, block_size=1)


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
    assert cache.path(name) == cache.root / LAYOUT / name[:2] / name
    assert cache.path(name).read_bytes()[:-TRAILER_SIZE] == data  # then its checksum
    assert cache.get(name) == data
    assert cache.get(name) == data
    assert cache.hits == 2
    assert cache.usage() == len(data) + TRAILER_SIZE


def test_put_accepts_memoryview_and_empty(cache: ContentCache) -> None:
    cache.put("aa-view", memoryview(b"view bytes"))
    assert cache.get("aa-view") == b"view bytes"
    cache.put("bb-empty", b"")
    assert cache.get("bb-empty") == b""


def test_get_of_a_missing_name_is_a_miss(cache: ContentCache) -> None:
    assert cache.get("00deadbeef") is None
    assert cache.misses == 1
    assert cache.hits == 0


@pytest.mark.parametrize("where", ["first byte", "middle", "last byte", "trailer"])
def test_bit_rot_with_the_times_restored_is_found_on_every_read(
    cache: ContentCache, where: str
) -> None:
    """Size, inode and mtime stay as they were: only the checksum can tell, and it is
    checked on each read, not once per process or per file."""
    data = os.urandom(5000)
    name = _name(data)
    cache.put(name, data)
    assert cache.get(name) == data  # read and found good first
    offset = {"first byte": 0, "middle": 2500, "last byte": 4999, "trailer": 5003}[where]
    _rot(cache.path(name), offset)
    assert cache.get(name) is None
    assert not cache.path(name).exists()
    assert (cache.damaged, cache.misses, cache.hits) == (1, 1, 1)
    assert cache.usage() == 0


def test_bit_rot_is_found_by_a_new_process_too(tmp_path: Path) -> None:
    first = ContentCache(tmp_path / "cache", max_bytes=1 << 20, block_size=1)
    data = os.urandom(3000)
    first.put("beef", data)
    _rot(first.path("beef"), 10)
    later = ContentCache(tmp_path / "cache", max_bytes=1 << 20, block_size=1)  # as after a restart
    assert later.get("beef") is None
    assert not later.contains("beef")


def test_a_damaged_file_is_logged_by_name(cache: ContentCache, caplog) -> None:
    cache.put("feed.c7", b"chunk seven")
    _rot(cache.path("feed.c7"), 3)
    with caplog.at_level("WARNING", logger="artifactfs.cache.disk"):
        assert cache.get("feed.c7") is None
    assert [r for r in caplog.records if "feed.c7" in r.getMessage()
            and "checksum" in r.getMessage()]


def test_a_good_file_under_another_name_is_refused(cache: ContentCache) -> None:
    """The name seeds the checksum: chunk 2's file where chunk 3's should be is damage."""
    cache.put("abcd.c2", b"chunk two")
    os.replace(cache.path("abcd.c2"), cache.path("abcd.c3"))
    assert cache.get("abcd.c3") is None
    assert not cache.path("abcd.c3").exists()


def test_truncated_file_is_detected(cache: ContentCache) -> None:
    data = os.urandom(5000)
    name = _name(data)
    cache.put(name, data)
    assert cache.get(name) == data
    with open(cache.path(name), "r+b") as f:
        f.truncate(4000)
    assert cache.get(name) is None
    assert not cache.path(name).exists()
    assert not cache.contains(name)


@pytest.mark.parametrize("size", [0, 1, TRAILER_SIZE - 1, TRAILER_SIZE, 5000 + TRAILER_SIZE - 1,
                                  5000 + TRAILER_SIZE + 1, 9000])
def test_a_file_cut_or_grown_with_its_times_kept_is_detected(
    cache: ContentCache, size: int
) -> None:
    data = os.urandom(5000)
    name = _name(data)
    cache.put(name, data)
    path = cache.path(name)
    st = path.stat()
    os.truncate(path, size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.get(name) is None
    assert not path.exists()


def test_altered_file_is_detected(cache: ContentCache) -> None:
    data = os.urandom(5000)
    name = _name(data)
    cache.put(name, data)
    path = cache.path(name)
    altered = bytearray(data)
    altered[1234] ^= 0xFF
    with open(path, "r+b") as f:
        f.write(altered)
    assert cache.get(name) is None
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
    _rot(cache.path(_name(bad)), 7)
    names = [_name(d) for d in blobs] + ["0" * 32]  # the last one was never cached
    before = _open_fds(cache)
    got = cache.get_many(names)
    assert _open_fds(cache) == before
    assert got == [blobs[0], blobs[1], None, *blobs[3:], None]
    assert not cache.contains(_name(bad))  # dropped, to be fetched again
    assert cache.misses == 2


def test_get_many_closes_every_file_when_a_read_fails(cache: ContentCache) -> None:
    blobs = [os.urandom(2000 + i) for i in range(4)]
    for data in blobs:
        cache.put(_name(data), data)
    where = cache.path(_name(blobs[1]))
    where.unlink()
    where.mkdir()  # opens, then its read raises IsADirectoryError
    before = _open_fds(cache)
    with pytest.raises(IsADirectoryError):
        cache.get_many([_name(d) for d in blobs])
    assert _open_fds(cache) == before


def test_file_replaced_by_another_process_is_detected(cache: ContentCache) -> None:
    data = os.urandom(3000)
    name = _name(data)
    cache.put(name, data)
    assert cache.get(name) == data
    other = ContentCache(cache.root, cache.max_bytes, block_size=1)
    path = cache.path(name)
    tmp = path.with_name("replacement")
    tmp.write_bytes(os.urandom(3000 + TRAILER_SIZE))  # no checksum of its own
    os.replace(tmp, path)
    assert other.get(name) is None
    assert not path.exists()
    assert cache.get(name) is None


def test_an_objects_folder_that_is_not_an_older_cache_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / "objects" / "pack").mkdir(parents=True)  # as in a git folder
    (root / "objects" / "ab").mkdir()
    cache = ContentCache(root, max_bytes=1 << 20, block_size=1)
    cache.put("cafe", b"new")
    wait_until(lambda: not cache._scanning)
    assert (root / "objects" / "pack").is_dir()


def test_put_replaces(cache: ContentCache) -> None:
    cache.put("cafe", b"one")
    assert cache.get("cafe") == b"one"
    cache.put("cafe", b"two")
    assert cache.get("cafe") == b"two"


def test_files_of_the_older_layout_are_never_read_and_are_removed(tmp_path: Path) -> None:
    """Today's code wrote bare bytes under ROOT/objects and trusted a stamp: such a file
    could have rotted unseen, so none is served, and the first scan deletes them all."""
    root = tmp_path / "cache"
    old = root / "objects" / "be" / "beef"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"verified once, long ago")
    cache = ContentCache(root, max_bytes=1 << 20, block_size=1)
    assert cache.get("beef") is None
    cache.put("cafe", b"new")  # the first put starts the first scan
    wait_until(lambda: not (root / "objects").exists())
    assert cache.get("cafe") == b"new"


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
    first = ContentCache(tmp_path / "c", max_bytes=1 << 20, block_size=1)
    first.put("a1b2", b"kept")
    second = ContentCache(tmp_path / "c", max_bytes=1 << 20, block_size=1)
    assert second.get("a1b2") == b"kept"


# ---- bound and eviction -----------------------------------------------------------------


def test_usage_stays_under_the_bound(tmp_path: Path) -> None:
    bound = 10_000
    cache = ContentCache(tmp_path / "cache", max_bytes=bound, block_size=1)
    written = 0
    for i in range(60):
        data = _blob(i, 1000)
        cache.put(_name(data), data)
        written += len(data)
        assert cache.usage() <= bound
    assert written > 5 * bound
    assert cache.usage() > 0
    newest = _blob(59, 1000)
    assert cache.get(_name(newest)) == newest


def test_reading_more_than_the_bound_keeps_it(tmp_path: Path) -> None:
    """Objects of mixed sizes, some of them read again, never hold more than the bound."""
    bound = 50_000
    cache = ContentCache(tmp_path / "cache", max_bytes=bound, block_size=1)
    sizes = [700, 3000, 12_000, 1, 9000, 25_000]
    for i in range(40):
        data = _blob(i, sizes[i % len(sizes)])
        cache.put(_name(data), data)
        if i >= 3:
            old = _blob(i - 3, sizes[(i - 3) % len(sizes)])
            cache.get(_name(old))
        assert cache.usage() <= bound


def test_object_larger_than_the_bound_does_not_stay(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=1000, block_size=1)
    cache.put("small", b"s" * 100)
    cache.put("large", b"L" * 5000)
    assert cache.usage() <= 1000


def test_the_bound_holds_at_every_moment_with_puts_from_many_threads(tmp_path: Path) -> None:
    """Room is made before a write, so not even a write in flight takes the folder past the
    bound (the old order, write and then evict, overshot by the objects in flight)."""
    bound = 40_000
    cache = ContentCache(tmp_path / "cache", max_bytes=bound, block_size=1)
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
    cache = ContentCache(tmp_path / "cache", max_bytes=1000, block_size=1)
    cache.put("small", b"s" * 100)
    cache.put("large", b"L" * 5000)
    assert not cache.contains("large")
    assert cache.get("small") == b"s" * 100
    assert folder_bytes(tmp_path / "cache") == 100 + TRAILER_SIZE


def test_a_failed_write_gives_its_room_back(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=5000, block_size=1)
    (cache.objects / "ab").write_bytes(b"")  # a file where a fan-out folder should be
    for i in range(20):  # 20,000 bytes of writes that fail
        cache.put(f"ab{i:030d}", _blob(i, 1000))
    data = _blob(99, 1000)
    cache.put(_name(data), data)
    assert cache.get(_name(data)) == data
    assert list(cache.tmp.iterdir()) == []


def test_a_failing_eviction_leaves_bytes_uncached_and_the_put_unharmed(tmp_path: Path) -> None:
    """A read that fetched verified bytes must not fail because the cache could not make
    room for them (here the eviction lock cannot be opened: a folder stands in its place)."""
    cache = ContentCache(tmp_path / "cache", max_bytes=3000, block_size=1)
    kept = [_filling(i, 1000) for i in range(2)]
    for data in kept:
        cache.put(_name(data), data)
    wait_until(lambda: cache._usage is not None)  # the first scan, started by the first put
    cache.evict()  # and a count of what is on disk that no put overlapped
    lock = tmp_path / "cache" / "evict.lock"
    lock.unlink()
    lock.mkdir()
    large = _filling(8, 1500)
    cache.put(_name(large), large)  # 3,500 bytes would need an eviction
    assert not cache.contains(_name(large))
    small = _filling(9, 500)
    cache.put(_name(small), small)  # fits as it is: the failed put gave its room back
    assert cache.get(_name(small)) == small
    assert all(cache.get(_name(d)) == d for d in kept)
    assert folder_bytes(tmp_path / "cache") == 2500


def test_eviction_removes_the_least_recently_used_first(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=4500, block_size=1)
    blobs = {k: _filling(i, 1000) for i, k in enumerate("abcd")}
    for data in blobs.values():
        cache.put(_name(data), data)
    assert cache.usage() == 4000
    # a was used longest ago, then b, c, d
    for age, k in zip((4000, 3000, 2000, 1000), "abcd", strict=True):
        _age(cache, _name(blobs[k]), age)
    extra = _filling(99, 1000)
    cache.put(_name(extra), extra)  # 5000 > 4500: evict down to 90%
    present = {k for k, data in blobs.items() if cache.contains(_name(data))}
    assert present == {"b", "c", "d"}
    assert cache.contains(_name(extra))
    assert cache.usage() <= 4500


def test_a_hit_makes_an_object_recently_used(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=4500, block_size=1)
    blobs = {k: _filling(i, 1000) for i, k in enumerate("abcd")}
    for data in blobs.values():
        cache.put(_name(data), data)
    for age, k in zip((4000, 3000, 2000, 1000), "abcd", strict=True):
        _age(cache, _name(blobs[k]), age)
    assert cache.get(_name(blobs["a"])) == blobs["a"]
    extra = _filling(99, 1000)
    cache.put(_name(extra), extra)
    present = {k for k, data in blobs.items() if cache.contains(_name(data))}
    assert present == {"a", "c", "d"}  # b is now the least recently used


def test_eviction_goes_on_in_order_of_last_use(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=6000, block_size=1)
    blobs = [_filling(i, 1000) for i in range(6)]
    for data in blobs:
        cache.put(_name(data), data)
    order = [3, 0, 5, 1, 4, 2]  # least recently used first
    for rank, i in enumerate(order):
        _age(cache, _name(blobs[i]), 10_000 - rank * 100)
    big = _filling(50, 2500)
    cache.put(_name(big), big)  # 8500 > 6000: down to 5400 or less -> drop 4 objects
    present = [i for i, data in enumerate(blobs) if cache.contains(_name(data))]
    assert sorted(present) == sorted(order[4:])
    assert cache.contains(_name(big))


def test_two_caches_on_one_folder_share_the_bound(tmp_path: Path) -> None:
    one = ContentCache(tmp_path / "cache", max_bytes=8000, block_size=1)
    two = ContentCache(tmp_path / "cache", max_bytes=8000, block_size=1)
    for i in range(30):
        data = _blob(i, 1000)
        (one if i % 2 else two).put(_name(data), data)
    one.evict()
    assert one.usage() <= 8000
    assert two.usage() == one.usage()


def test_the_bound_holds_for_what_files_take_on_disk(tmp_path: Path) -> None:
    """Small objects take whole blocks: 5,000 bytes and a trailer are 8 KiB on a 4 KiB-block
    file system. Counted by their length, the folder held half as much again as its bound
    (a mount reading 64 KiB files went 6% over, workload 8 of make bench)."""
    bound = 64 * 4096
    cache = ContentCache(tmp_path / "cache", max_bytes=bound)
    for i in range(200):
        data = _blob(i, 5000)
        cache.put(_name(data), data)
        assert allocated_bytes(cache.objects) <= bound
    assert cache.usage() <= bound
    assert allocated_bytes(cache.objects) > bound // 2  # it was used, not just refused
    newest = _blob(199, 5000)
    assert cache.get(_name(newest)) == newest


def test_usage_counts_whole_blocks(tmp_path: Path) -> None:
    cache = ContentCache(tmp_path / "cache", max_bytes=1 << 20, block_size=4096)
    cache.put("aa-one", b"x")
    cache.put("bb-two", b"y" * (4096 - TRAILER_SIZE + 1))  # one byte into a second block
    assert cache.usage() == 3 * 4096


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
