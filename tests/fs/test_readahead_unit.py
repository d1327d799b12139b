"""The sequential read-ahead window (fs/reader.py ReadAhead): how it grows, what resets it,
where it stops. No mount."""

from __future__ import annotations

from pathlib import Path

from artifactfs.cache import ContentCache
from artifactfs.content import VerifiedContent
from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.fs.reader import ReadAhead, VerifiedReader
from artifactfs.registry import LocalRegistry
from artifactfs.store import Store

KIB = 1024
READ = 128 * KIB  # the kernel's usual read size


def _read_on(state: ReadAhead, start: int, count: int, size: int = READ) -> list[int]:
    """``count`` reads in a row from ``start``; the window after each."""
    windows = []
    for n in range(count):
        assert state.advance(start + n * size, size)
        windows.append(state.window)
    return windows


def test_sequential_reads_double_the_window_up_to_the_cap():
    state = ReadAhead(cap=8)
    assert _read_on(state, 0, 6) == [1, 2, 4, 8, 8, 8]
    assert state.next_offset == 6 * READ


def test_a_first_read_away_from_the_start_is_not_sequential():
    state = ReadAhead(cap=8)
    assert not state.advance(10 * CHUNK_SIZE, READ)
    assert state.window == 0
    assert _read_on(state, 10 * CHUNK_SIZE + READ, 2) == [1, 2]  # from there on it is


def test_a_seek_resets_the_window_and_what_was_fetched():
    state = ReadAhead(cap=16)
    _read_on(state, 0, 5)
    state.fetched_to = 9  # read-ahead asked for chunks up to 9
    assert not state.advance(100 * CHUNK_SIZE, READ)  # far ahead
    assert (state.window, state.fetched_to, state.next_offset) == (0, 0, 100 * CHUNK_SIZE + READ)
    _read_on(state, 100 * CHUNK_SIZE + READ, 3)
    assert not state.advance(0, READ)  # back to the start: a seek too
    assert state.window == 0


def test_reads_a_little_out_of_order_still_count_as_sequential():
    """The kernel has several reads of a file in flight; answered out of order, one lands
    behind the furthest seen. That is not a seek: the window is kept (it grows only with
    reads that go further)."""
    state = ReadAhead(cap=8)
    _read_on(state, 0, 4)
    furthest = state.next_offset
    assert state.advance(furthest - 2 * READ, READ)
    assert (state.window, state.next_offset) == (8, furthest)
    assert not state.advance(furthest - 9 * CHUNK_SIZE, READ)  # too far behind: a seek


def test_a_read_a_few_reads_past_the_furthest_still_counts_as_sequential():
    """The read before it has not reached the daemon's task yet: that is no seek either.
    Taken for one, it reset the window, and a sequential read of 49 chunks through a
    mount took up to 20 requests instead of 12."""
    state = ReadAhead(cap=8)
    _read_on(state, 0, 4, size=CHUNK_SIZE)
    furthest = state.next_offset
    assert state.advance(furthest + CHUNK_SIZE, CHUNK_SIZE)  # one read skipped for now
    assert (state.window, state.next_offset) == (8, furthest + 2 * CHUNK_SIZE)
    assert state.advance(furthest, CHUNK_SIZE)  # and the one it passed, behind it now
    assert state.window == 8


def test_a_read_far_past_the_furthest_is_a_seek():
    state = ReadAhead(cap=8)
    _read_on(state, 0, 4)  # 128 KiB reads
    assert not state.advance(state.next_offset + 5 * READ, READ)  # past four reads of its size
    assert state.window == 0


def test_a_cap_of_zero_never_reads_ahead():
    state = ReadAhead(cap=0)
    assert _read_on(state, 0, 4) == [0, 0, 0, 0]


def test_the_readers_cap_is_at_most_half_its_memory(tmp_path: Path):
    """Chunks read ahead wait in memory until read: a window over half the budget would
    push out its own chunks first."""
    content = VerifiedContent(LocalRegistry(Store(tmp_path / "store")),
                              ContentCache(tmp_path / "cache", 1 << 30))

    async def never(*_: object) -> None:
        raise AssertionError("no fetch expected")

    small = VerifiedReader(content, never, memory_bytes=4 * CHUNK_SIZE, readahead_cap=16,
                           run_chunks=8)
    large = VerifiedReader(content, never, memory_bytes=64 * CHUNK_SIZE, readahead_cap=16,
                           run_chunks=8)
    assert (small.readahead_cap, large.readahead_cap) == (2, 16)
