"""Verified content through the cache, against a real embedded store."""

from __future__ import annotations

import functools
import hashlib
import os
import random
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

from artifactfs.cache import ContentCache
from artifactfs.config import Config
from artifactfs.content import VerifiedContent, open_content
from artifactfs.core.chunks import CHUNK_INDEX_EXTRA_KEY, CHUNK_SIZE, ChunkIndex
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.errors import DigestMismatch
from artifactfs.core.manifest import ManifestEntry
from artifactfs.files import hash_file
from artifactfs.fs.reader import VerifiedReader
from artifactfs.registry import LocalRegistry, open_registry
from artifactfs.store import Store


def stored_entry(store: Store, tmp_path: Path, data: bytes) -> ManifestEntry:
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    digest = hash_file(src)
    store.blobs.put_file(src, digest.digest)
    assert digest.chunk_index is not None
    extra = {CHUNK_INDEX_EXTRA_KEY: digest.chunk_index.sha256()}
    return ManifestEntry("big.bin", digest.digest, digest.size, extra=extra)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Store, VerifiedContent]:
    store = Store(tmp_path / "store")
    return store, VerifiedContent(LocalRegistry(store), ContentCache(tmp_path / "cache", 1 << 30))


def test_first_chunk_of_a_cold_file_is_verified_and_cached(parts, tmp_path: Path):
    store, content = parts
    data = os.urandom(3 * CHUNK_SIZE + 5)
    entry = stored_entry(store, tmp_path, data)
    assert content.chunk(entry, 0) == data[:CHUNK_SIZE]
    assert content.chunk(entry, 3) == data[3 * CHUNK_SIZE :]
    key = blob_key(entry.digest)
    assert content.cache.contains(f"{key}.c0") and content.cache.contains(f"{key}.idx")
    assert content.stats.bytes == CHUNK_SIZE + 5  # each chunk fetched once


def test_an_index_cut_in_other_sized_chunks_is_refused_not_followed(parts, tmp_path: Path):
    """An entry without the index's hash (a W&B export) trusts the registry's index; one
    cut in 512 KiB chunks would check, and pass, the wrong half of every chunk."""
    store, content = parts
    data = os.urandom(3 * CHUNK_SIZE)
    entry = stored_entry(store, tmp_path, data)
    half = CHUNK_SIZE // 2
    other = ChunkIndex(half, len(data), tuple(
        hashlib.sha256(data[i : i + half]).digest() for i in range(0, len(data), half)
    ))
    store.blobs._index_path(entry.digest).write_bytes(other.to_bytes())
    bare = ManifestEntry(entry.path, entry.digest, entry.size)
    with pytest.raises(DigestMismatch, match="chunk index"):
        content.chunk(bare, 1)
    assert not any(content.cache.objects.rglob("*.c*"))  # nothing cached either


def test_an_index_trusted_for_an_entry_without_its_hash_is_not_used_for_one_with_it(
    parts, tmp_path: Path
):
    """A registry serving other bytes under a digest, with an index to match: an entry that
    names no index hash can only trust it; one that names the hash must not inherit that
    trust from memory or from the disk cache."""
    store, content = parts
    data = os.urandom(2 * CHUNK_SIZE + 9)
    entry = stored_entry(store, tmp_path, data)
    other = os.urandom(len(data))
    store.blobs.path(entry.digest).write_bytes(other)
    store.blobs._index_path(entry.digest).write_bytes(ChunkIndex(CHUNK_SIZE, len(other), tuple(
        hashlib.sha256(other[i : i + CHUNK_SIZE]).digest()
        for i in range(0, len(other), CHUNK_SIZE)
    )).to_bytes())
    bare = ManifestEntry(entry.path, entry.digest, entry.size)
    assert content.chunk(bare, 1) == other[CHUNK_SIZE : 2 * CHUNK_SIZE]  # nothing to check by
    # another process: the index on disk carries the cache's "checked" stamp
    fresh = VerifiedContent(content.registry, ContentCache(content.cache.root, 1 << 30))
    with pytest.raises(DigestMismatch, match="chunk index"):
        fresh.chunk(entry, 1)
    with pytest.raises(DigestMismatch, match="chunk index"):  # this one holds it in memory
        content.chunk(entry, 1)


def test_a_read_that_fails_does_not_hand_its_cancellation_to_other_readers(
    parts, tmp_path: Path
):
    """A read over chunks 0 and 1 fails on chunk 0 and so cancels its fetch of chunk 1.
    Another read waiting for that fetch must fetch chunk 1 itself: raised in its task, the
    first read's cancellation would escape every handler and end the mount."""
    store, content = parts
    data = os.urandom(3 * CHUNK_SIZE)
    entry = stored_entry(store, tmp_path, data)
    with open(store.blobs.path(entry.digest), "r+b") as f:  # chunk 0 fails, twice
        f.seek(100)
        f.write(b"\x00" if data[100] else b"\x01")
    gates = {0: threading.Event(), 1: threading.Event()}

    async def gated(func, *args):  # the daemon's hand-off, each fetch held at its chunk's gate
        def run():
            gates[args[-2]].wait(30)  # args end with: entry, first, stop
            return func(*args)
        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)

    reader = VerifiedReader(content, gated, memory_bytes=8 << 20)
    got: dict[str, object] = {}

    async def failing_read() -> None:
        with pytest.raises(DigestMismatch):
            await reader.read(entry, 0, 2 * CHUNK_SIZE)
        got["first"] = "failed"
        gates[1].set()

    async def waiting_read() -> None:
        got["second"] = bytes(await reader.piece(entry, 1))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(failing_read)
            await trio.testing.wait_all_tasks_blocked()
            assert (entry.digest, 1) in reader._inflight
            nursery.start_soon(waiting_read)
            await trio.testing.wait_all_tasks_blocked()  # waiting on the first read's fetch
            gates[0].set()

    trio.run(main)
    assert got["first"] == "failed"
    assert got["second"] == data[CHUNK_SIZE : 2 * CHUNK_SIZE]


def test_a_bad_first_chunk_is_fetched_once_more_then_refused(parts, tmp_path: Path):
    store, content = parts
    data = os.urandom(2 * CHUNK_SIZE)
    entry = stored_entry(store, tmp_path, data)
    with open(store.blobs.path(entry.digest), "r+b") as f:
        f.seek(100)
        f.write(b"\x00" if data[100] else b"\x01")
    with pytest.raises(DigestMismatch):
        content.chunk(entry, 0)
    assert content.stats.bytes == 2 * CHUNK_SIZE  # the first try and one more
    assert not content.cache.contains(f"{blob_key(entry.digest)}.c0")
    assert content.chunk(entry, 1) == data[CHUNK_SIZE:]  # the good chunk still reads


def test_a_run_of_missing_chunks_is_fetched_with_one_request(parts, tmp_path: Path):
    store, content = parts
    data = os.urandom(6 * CHUNK_SIZE + 7)
    entry = stored_entry(store, tmp_path, data)
    got = content.chunks(entry, 0, 4)
    assert b"".join(got) == data[: 4 * CHUNK_SIZE]
    assert content.stats.requests == 2  # the chunk index and one range of four chunks
    key = blob_key(entry.digest)
    assert all(content.cache.contains(f"{key}.c{n}") for n in range(4))
    assert not content.cache.contains(f"{key}.c4")


def test_chunks_in_the_cache_split_a_run_instead_of_being_fetched_again(parts, tmp_path):
    store, content = parts
    data = os.urandom(5 * CHUNK_SIZE)
    entry = stored_entry(store, tmp_path, data)
    content.chunk(entry, 2)
    before = content.stats.as_dict()
    assert b"".join(content.chunks(entry, 0, 5)) == data
    after = content.stats.as_dict()
    assert after["requests"] - before["requests"] == 2  # [0, 2) and [3, 5)
    assert after["bytes"] - before["bytes"] == 4 * CHUNK_SIZE


def test_a_bad_chunk_inside_a_run_is_retried_alone_and_the_good_ones_are_kept(
    parts, tmp_path: Path
):
    store, content = parts
    data = os.urandom(4 * CHUNK_SIZE)
    entry = stored_entry(store, tmp_path, data)
    with open(store.blobs.path(entry.digest), "r+b") as f:  # spoil chunk 2 in the store
        f.seek(2 * CHUNK_SIZE + 10)
        f.write(b"\x00" if data[2 * CHUNK_SIZE + 10] else b"\x01")
    with pytest.raises(DigestMismatch, match="chunk 2"):
        content.chunks(entry, 0, 4)
    key = blob_key(entry.digest)
    assert [content.cache.contains(f"{key}.c{n}") for n in range(4)] == [True, True, False, True]
    assert content.stats.bytes == 5 * CHUNK_SIZE  # the run, then chunk 2 once more
    assert content.read(entry, 0, 2 * CHUNK_SIZE) == data[: 2 * CHUNK_SIZE]


def test_download_of_a_large_entry_asks_for_runs_not_single_chunks(parts, tmp_path: Path):
    store, content = parts
    data = os.urandom(20 * CHUNK_SIZE + 3)
    entry = stored_entry(store, tmp_path, data)
    dest = tmp_path / "out.bin"
    content.download(entry, dest)
    assert dest.read_bytes() == data
    assert content.stats.requests <= 1 + 3  # the index and three runs of at most eight


def small_entries(store: Store, tmp_path: Path, blobs: list[bytes]) -> list[ManifestEntry]:
    out = []
    for i, data in enumerate(blobs):
        src = tmp_path / f"s{i}.bin"
        src.write_bytes(data)
        digest = hash_file(src)
        store.blobs.put_file(src, digest.digest)
        out.append(ManifestEntry(f"s{i}.bin", digest.digest, digest.size))
    return out


def test_small_entries_are_read_together_and_cached(parts, tmp_path: Path):
    store, content = parts
    blobs = [os.urandom(1000 + i) for i in range(5)] + [b""]
    entries = small_entries(store, tmp_path, blobs)
    content.whole(entries[2])  # already cached: not fetched again
    before = content.stats.bytes
    assert [bytes(p) for p in content.wholes(entries)] == blobs
    assert content.stats.bytes - before == sum(map(len, blobs)) - len(blobs[2])
    assert all(content.cache.contains(blob_key(e.digest)) for e in entries[:5])


def test_a_bad_small_entry_in_a_batch_is_retried_alone_then_refused(parts, tmp_path: Path):
    store, content = parts
    blobs = [os.urandom(2000) for _ in range(3)]
    entries = small_entries(store, tmp_path, blobs)
    with open(store.blobs.path(entries[1].digest), "r+b") as f:
        f.write(b"\x00" if blobs[1][0] else b"\x01")
    with pytest.raises(DigestMismatch):
        content.wholes(entries)
    assert content.stats.bytes == 4 * 2000  # three in the batch, the bad one once more
    assert not content.cache.contains(blob_key(entries[1].digest))
    assert content.cache.contains(blob_key(entries[0].digest))


def test_small_entries_past_the_batch_byte_limit_are_split_into_several_batches(
    parts, tmp_path: Path
):
    from artifactfs.core.wire import BATCH_MAX_BYTES

    store, content = parts
    calls: list[int] = []
    read_blobs = content.registry.read_blobs

    def counting(digests):  # the real store behind it; only the call sizes are recorded
        calls.append(len(digests))
        return read_blobs(digests)

    content.registry.read_blobs = counting  # type: ignore[method-assign]
    blobs = [os.urandom(CHUNK_SIZE) for _ in range(BATCH_MAX_BYTES // CHUNK_SIZE + 3)]
    entries = small_entries(store, tmp_path, blobs)
    assert [bytes(p) for p in content.wholes(entries)] == blobs
    assert calls == [BATCH_MAX_BYTES // CHUNK_SIZE, 3]


def test_chunks_of_a_run_kept_in_memory_hold_no_more_than_the_budget(
    parts, tmp_path: Path
):
    """A run of chunks arrives in one buffer; a chunk kept as a view of it held the whole
    run in memory once its neighbours were pushed out, while the budget counted one."""
    store, content = parts
    data = os.urandom(8 * CHUNK_SIZE)
    entry = stored_entry(store, tmp_path, data)
    budget = 5 * CHUNK_SIZE
    reader = VerifiedReader(content, _in_thread, memory_bytes=budget)

    async def main() -> None:
        await reader._fetch(entry, 0, 4)  # one run
        assert bytes(await reader.piece(entry, 0)) == data[:CHUNK_SIZE]  # used again
        await reader._fetch(entry, 4, 8)  # the next run pushes out chunks 1 to 3, not 0

    trio.run(main)
    kept = list(reader._memory.values())
    held = {id(b): len(b) for b in (p.obj if isinstance(p, memoryview) else p for p in kept)}
    assert (entry.digest, 0) in reader._memory and sum(held.values()) <= budget


@pytest.mark.parametrize("transport", ["server"])  # whose batch answer is one buffer
def test_prefetched_small_files_hold_no_more_memory_than_the_budget(
    config: Config, tmp_path: Path
):
    """The budget counts each piece's own bytes, so no piece may keep more alive: a small
    file's share of a batch answer, kept as a view, held the whole answer. And a batch asks
    for no more than the prefetch budget (half the memory) holds."""
    registry = open_registry(config)
    content = open_content(config, registry)
    blobs = [os.urandom(50_000 + i) for i in range(60)]  # 3 MB
    entries = []
    for i, data in enumerate(blobs):
        src = tmp_path / f"s{i}.bin"
        src.write_bytes(data)
        registry.upload_blob(src, md5_b64(data))
        entries.append(ManifestEntry(f"s{i}.bin", md5_b64(data), len(data)))
    budget = 1 << 20
    reader = VerifiedReader(content, _in_thread, memory_bytes=budget)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            reader.schedule_small(nursery, entries)

    try:
        trio.run(main)
        fitting = reader.prefetch_bytes // 50_100
        assert content.stats.bytes == sum(map(len, blobs[:fitting]))  # one batch
        assert content.stats.requests == 1
        kept = [p for p, _ in reader._waiting.values()]
        held = {id(b): len(b) for b in (p.obj if isinstance(p, memoryview) else p for p in kept)}
        assert len(kept) == fitting and sum(held.values()) <= reader.prefetch_bytes
        assert all(bytes(reader._waiting[(e.digest, -1)][0]) == data
                   for e, data in zip(entries[:fitting], blobs, strict=False))
    finally:
        registry.close()


def test_prefetch_stays_within_its_budget_and_every_file_is_fetched_once(
    parts, tmp_path: Path
):
    """Reads in shuffled order over a folder larger than memory: small files fetched ahead
    wait outside the LRU until read, more are fetched as reads free the budget, and none is
    pushed out unread and read a second time (from the store or the disk cache)."""
    store, content = parts
    blobs = [os.urandom(20_000 + i) for i in range(120)]  # 2.4 MB, memory 1 MiB
    entries = small_entries(store, tmp_path, blobs)
    reader = VerifiedReader(content, _in_thread, memory_bytes=1 << 20)
    reader.disk_ahead_bytes = 0  # memory only: see the next test for the disk cache
    order = list(range(len(entries)))
    random.Random(5).shuffle(order)
    peak = 0

    async def main() -> None:
        nonlocal peak
        sweep = 0
        async with trio.open_nursery() as nursery:
            for i in order:
                went = reader.schedule_small(nursery, entries[sweep : sweep + 64], sweep=True)
                sweep += went
                peak = max(peak, reader.prefetched_unread)
                got = await reader.read(entries[i], 0, entries[i].size)
                assert bytes(got) == blobs[i]
                assert reader._memory.currsize + reader._waiting_bytes <= 1 << 20

    trio.run(main)
    assert 0 < peak <= reader.prefetch_bytes
    assert reader.prefetched_unread == 0 and not reader._waiting
    assert content.stats.bytes == sum(map(len, blobs))  # each blob once
    assert content.cache.hits == 0  # nothing read back from the disk cache either
    assert content.stats.requests < len(entries) * 3 // 4  # many came in batches


def test_a_sweep_past_its_memory_goes_on_into_the_disk_cache_within_its_own_bound(
    parts, tmp_path: Path
):
    """Files a sweep fetches past its share of memory are verified and cached, not kept in
    memory; a read of them comes from the disk cache (no second fetch), and the bound on
    such files frees up as they are read."""
    store, content = parts
    blobs = [os.urandom(40_000 + i) for i in range(100)]  # 4 MB; memory 1 MiB, disk 2 MiB
    entries = small_entries(store, tmp_path, blobs)
    reader = VerifiedReader(content, _in_thread, memory_bytes=1 << 20)
    reader.disk_ahead_bytes = 2 << 20

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            went = reader.schedule_small(nursery, entries, sweep=True)
        in_memory = len(reader._waiting)
        assert 0 < in_memory < went < len(entries)
        assert reader.prefetched_unread <= reader.prefetch_bytes
        assert 0 < reader.prefetched_to_disk_unread <= reader.disk_ahead_bytes
        assert reader._memory.currsize + reader._waiting_bytes <= 1 << 20
        assert all(content.cache.contains(blob_key(e.digest)) for e in entries[:went])
        fetched = content.stats.bytes
        for entry, data in zip(entries[:went], blobs, strict=False):
            assert bytes(await reader.read(entry, 0, entry.size)) == data
        assert content.stats.bytes == fetched  # nothing fetched twice
        assert content.cache.hits == went - in_memory  # the rest came from the disk cache
        assert reader.prefetched_unread == reader.prefetched_to_disk_unread == 0

    trio.run(main)
    assert content.stats.requests == 1  # one batch for all of them


def test_prefetched_files_never_read_give_their_budget_up_after_a_while(
    parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A reader that stopped must not hold the prefetch budget for good."""
    from artifactfs.fs import reader as reader_module

    store, content = parts
    blobs = [os.urandom(30_000 + i) for i in range(40)]
    entries = small_entries(store, tmp_path, blobs)
    reader = VerifiedReader(content, _in_thread, memory_bytes=1 << 20)
    reader.disk_ahead_bytes = 0

    async def look(part: list[ManifestEntry]) -> int:
        async with trio.open_nursery() as nursery:
            return reader.schedule_small(nursery, part, sweep=True)

    first = trio.run(look, entries)
    assert 0 < first < len(entries) and reader.prefetched_unread > 0
    assert trio.run(look, entries[first:]) == 0  # no room: nothing read yet
    monkeypatch.setattr(reader_module, "_STALE_WAIT_SECONDS", 0.0)
    assert trio.run(look, entries[first:]) > 0  # the unread ones gave their room up
    assert all(content.cache.contains(blob_key(e.digest)) for e in entries[:first])


def test_small_files_once_read_are_not_prefetched_again(parts, tmp_path: Path):
    store, content = parts
    blobs = [os.urandom(2000 + i) for i in range(8)]
    entries = small_entries(store, tmp_path, blobs)
    reader = VerifiedReader(content, _in_thread, memory_bytes=8 << 20)
    scheduled: list[int] = []

    async def main() -> None:
        for entry, data in zip(entries[:4], blobs, strict=False):
            assert bytes(await reader.read(entry, 0, entry.size)) == data
        reader._memory.clear()  # pushed out of memory; still in the disk cache
        async with trio.open_nursery() as nursery:
            reader.schedule_small(nursery, entries[:4])  # all read before: nothing to do
            scheduled.append(len(nursery.child_tasks))
            reader.schedule_small(nursery, entries)  # four new ones: one batch for them
            scheduled.append(len(nursery.child_tasks))

    trio.run(main)
    assert scheduled == [0, 1]
    assert all(content.cache.contains(blob_key(e.digest)) for e in entries)


async def _in_thread(func, *args):
    return await trio.to_thread.run_sync(functools.partial(func, *args))


# ---- bit rot in the disk cache (issue 15, item 5) ---------------------------------------


def _rot(path: Path, damage: str) -> None:
    """Damage a cache file the way a disk would, then put its times back as they were, so
    that only its bytes (or its length) tell: one flipped bit, one byte cut or added."""
    st = path.stat()
    if damage == "flip":
        with open(path, "r+b") as f:
            f.seek(1000)
            byte = f.read(1)[0]
            f.seek(1000)
            f.write(bytes([byte ^ 0x04]))
    else:
        os.truncate(path, st.st_size + (-1 if damage == "truncate" else 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
@pytest.mark.parametrize("kind", ["small", "chunk"])
def test_sdk_download_drops_a_rotten_cache_entry_and_fetches_it_again(
    config: Config, tmp_path: Path, kind: str, damage: str
):
    """Through the SDK, against the embedded store and a real server: the first download
    fills the cache, the cache file rots, a second download (a new client, as in a new
    process) gets the right bytes and leaves a good entry in place of the rotten one."""
    from artifactfs.sdk import Api, Artifact

    data = os.urandom(70_000) if kind == "small" else os.urandom(3 * CHUNK_SIZE + 77)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(data)
    api = Api(config=config)
    try:
        art = Artifact("rot", "dataset")
        art._client = api
        art.add_dir(src)
        art = art.save(project="vision")
        art.download(tmp_path / "one")
        name = blob_key(art.manifest["f.bin"].digest) + ("" if kind == "small" else ".c1")
    finally:
        api.close()
    path = ContentCache(config.cache_dir, 1 << 30).path(name)
    size = path.stat().st_size
    _rot(path, damage)
    api = Api(config=config)  # a new client, with nothing of the first in memory
    try:
        again = api.artifact("vision/rot:v0")
        again.download(tmp_path / "two")
        assert (tmp_path / "two" / "f.bin").read_bytes() == data
        again.verify(tmp_path / "two")
    finally:
        api.close()
    assert path.stat().st_size == size  # the rotten file was dropped and written anew
    good = data if kind == "small" else data[CHUNK_SIZE : 2 * CHUNK_SIZE]
    assert path.read_bytes()[: len(good)] == good


def test_download_of_a_small_entry_hashes_its_bytes_once(
    parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The MD5 check of the fetch is the check: the download hashed the same bytes again.
    From the disk cache (checked by its own checksum) nothing is MD5-hashed at all."""
    store, content = parts
    data = os.urandom(300_000)
    (entry,) = small_entries(store, tmp_path, [data])
    made: list[int] = []
    real_md5 = hashlib.md5

    def counting_md5(*args, **kwargs):  # the real hash; only the passes are counted
        made.append(1)
        return real_md5(*args, **kwargs)

    monkeypatch.setattr(hashlib, "md5", counting_md5)
    content.download(entry, tmp_path / "cold.bin")
    assert (tmp_path / "cold.bin").read_bytes() == data and len(made) == 1
    content.download(entry, tmp_path / "warm.bin")
    assert (tmp_path / "warm.bin").read_bytes() == data and len(made) == 1
    with open(store.blobs.path(entry.digest), "r+b") as f:  # bad bytes are still refused
        f.write(b"\x00" if data[0] else b"\x01")
    content.cache.discard(blob_key(entry.digest))
    with pytest.raises(DigestMismatch):
        content.download(entry, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()
