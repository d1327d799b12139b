"""Verified reads for the daemon: chunk fetches in worker threads, deduplicated, with a
bounded in-memory LRU of recent pieces and sequential read-ahead.

The kernel has several read requests of a file in flight at once, and they straddle chunk
boundaries; without this layer each of them would fetch (or read from the disk cache and
check) the chunks it touches. Here each piece has one flight that every reader of it waits
on, fetched alone, in a run of chunks (read-ahead) or in a batch of small files (prefetch),
and the verified piece stays in memory for the next requests.

Small files fetched ahead wait outside the LRU for their first read, within a budget
(see ``VerifiedReader.__init__`` and ``SiblingWindow`` for why and how they are chosen).

Concurrency rules: ``_inflight``, ``_memory``, the prefetch budget (``_ahead``,
``_waiting``, ``_on_disk_ahead``) and ``_unreachable`` are only touched on the event loop;
the blocking fetch runs in a thread through ``VerifiedContent``, which is thread-safe.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, cast

import trio
from cachetools import LRUCache, TTLCache

from artifactfs.content import Piece, VerifiedContent
from artifactfs.core.chunks import CHUNK_SIZE, ChunkSpan, chunk_count
from artifactfs.core.errors import RegistryUnavailable
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.references import reference_cache_name
from artifactfs.fs.options import option_default

__all__ = ["ReadAhead", "SiblingWindow", "VerifiedReader", "first_error"]

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]
PieceKey = tuple[str, int]  # (piece_id, chunk number; -1 for a whole small file)

# How far behind the furthest read a read may land and still count as sequential: the
# kernel's own read-ahead keeps up to a few MiB of requests in flight.
_REORDER_SLACK = 8 * CHUNK_SIZE
# and how many reads of its own size past it (random reads a few KiB apart stay random)
_AHEAD_READS = 4

# Small-file digests remembered as present in the disk cache (prefetch skips them).
_ON_DISK_REMEMBERED = 200_000

# When a read fails, the kernel asks once more for the page it needed (its read-ahead
# request failed first, then it reads that one page itself): without an answer ready, that
# second request waited out --read-timeout again, and a read() on a stalled registry took
# twice the timeout (seen: 4.0 s against --read-timeout 2, make faults). So a fetch that
# found the registry unreachable (or timed out) fails the next request for any of its
# pieces at once, once, and only for this many seconds: the read() after that asks the
# registry again, which may be back.
_RETRY_ANSWERED_SECONDS = 1.0

# A sweep that has filled its share of memory goes on into the disk cache alone, up to
# this many times the memory budget of files fetched and not read yet (1 GiB of the 10 GiB
# cache by default). A read of such a file is a local read and a checksum, where the
# single request it would have made instead cost more: with a server, an HTTP round trip
# on both sides (a shuffled epoch 0 of 2,000 x 64 KiB, server: 880 requests for 2,000
# files when only memory was filled ahead).
_DISK_AHEAD_TIMES_MEMORY = 16

# A small file fetched ahead and not read for this long gives its share of the prefetch
# budget up when another batch needs room (it stays in the disk cache): a reader that
# stopped must not hold the budget for good. A shuffled epoch reads its prefetched files
# long before: 30 s is 15,000 reads at the 500 files/s of a cold epoch here.
_STALE_WAIT_SECONDS = 30.0


def piece_id(entry: ManifestEntry) -> str:
    """What a piece of ``entry`` is known by in memory: its digest for a stored entry; for a
    reference, its cache name (URI, digest, ETag, version), since two sources may send one
    ETag for other bytes (two servers counting from 1)."""
    return entry.digest if entry.ref is None else reference_cache_name(entry)


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of an exception group: what a caller outside the nursery expects."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _owned_pieces(fetch: Callable[..., Any], *args: Any) -> list[Piece | None]:
    """``fetch(*args)`` (in a worker thread) as pieces that each own their bytes. A piece
    cut from a larger buffer (a chunk of a run, a small file of a batch answer) and kept in
    memory as a view would keep the whole buffer alive while the budget counts only its
    own length; copied here, only the pieces kept pay for it, not downloads. None (a
    prefetch found the piece in the disk cache and left it there) stays None."""
    result = fetch(*args)
    pieces: list[Piece | None] = result if isinstance(result, list) else [result]
    return [bytes(p) if isinstance(p, memoryview) and memoryview(p.obj).nbytes > p.nbytes
            else p for p in pieces]


class SiblingWindow:
    """Where an open (or, under no-open, a file's first read) should look for small files to
    prefetch, and when.

    A reader going through a folder in order needs the next ``window`` files looked at
    once per quarter window, not at every open: the look itself (which of them are in
    memory, in flight, on disk) was a quarter of the daemon's time per warm open.

    Any other order (a shuffled epoch, several readers in one folder) gains nothing from
    the files after the one opened: the next file read is anywhere. Looking there at every
    open fetched files long before they were read, and with more of them than the memory
    budget holds, most were pushed out unread and read again from the disk cache (1,376 of
    2,000 in a shuffled epoch 0 of 64 KiB files). Such reads sweep the folder instead:
    each look goes on in listing order from where the last one stopped, so every file is
    considered once per folder, in batches, as fast as the reader's prefetch budget frees
    up (``VerifiedReader.schedule_small``).
    """

    def __init__(self, window: int) -> None:
        self.window = window
        # folder -> (index of the last open, end of the window looked at, sweep position)
        self._folders: LRUCache[Hashable, tuple[int, int, int]] = LRUCache(maxsize=4096)

    def due(self, folder: Hashable, index: int) -> bool:
        """Whether to look after ``index`` now (only reads in listing order ask this)."""
        return self.look(folder, index) is not None

    def look(self, folder: Hashable, index: int) -> tuple[int, bool] | None:
        """``(position, sweeping)``: look at the files after ``position`` now, or None.

        ``sweeping``: the read was out of order and ``position`` is where the folder's
        sweep stands; the caller reports how far it got with ``swept``.
        """
        last, horizon, sweep = self._folders.get(folder, (-2, -1, -1))
        if index == last + 1 or last == -2:  # in order, or the folder's first read
            if index == last + 1 and index + self.window - self.window // 4 < horizon:
                self._folders[folder] = (index, horizon, sweep)
                return None
            self._folders[folder] = (index, index + 1 + self.window, sweep)
            return index, False
        self._folders[folder] = (index, -1, sweep)  # nothing after it looked at
        return sweep, True

    def swept(self, folder: Hashable, position: int) -> None:
        """The sweep of ``folder`` went past every file up to ``position`` (inclusive)."""
        found = self._folders.get(folder)
        if found is not None and position > found[2]:
            self._folders[folder] = (found[0], found[1], position)


@dataclass(slots=True)
class ReadAhead:
    """Per-handle state: how far sequential reading got and how far ahead to fetch.

    The window starts at one chunk and doubles with each sequential read up to ``cap``; a
    read elsewhere in the file resets it, so random reads fetch only their own chunks.
    """

    next_offset: int = -1
    window: int = 0  # chunks
    fetched_to: int = 0  # first chunk not yet asked for by read-ahead
    cap: int = 8

    def advance(self, offset: int, size: int) -> bool:
        """Record a read; True when it continues the previous one (sequential).

        The kernel has several reads of one file in flight and they may reach the daemon's
        tasks out of order, so a read a little behind the furthest one seen, or a few reads
        of its size past it (the reads before it not handled yet), does not count as a
        seek. Counted as one, it reset the window, and a sequential read of 49 chunks took
        up to 20 requests instead of 12.
        """
        if self.next_offset == -1:
            sequential = offset == 0
        else:
            sequential = (self.next_offset - _REORDER_SLACK <= offset
                          <= self.next_offset + _AHEAD_READS * size)
        if sequential:
            if offset + size > self.next_offset:
                self.next_offset = offset + size
                self.window = min(self.cap, max(1, self.window * 2))
        else:
            self.next_offset = offset + size
            self.window = 0
            self.fetched_to = 0
        return sequential


@dataclass(slots=True)
class _Flight:
    done: trio.Event = field(default_factory=trio.Event)
    data: bytes | None = None
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class _Unreachable:
    """A fetch that found the registry unreachable, and the pieces it was for."""

    why: str
    keys: list[PieceKey]


class VerifiedReader:
    def __init__(
        self,
        content: VerifiedContent,
        blocking: Blocking,
        *,
        memory_bytes: int = option_default("memory_bytes"),
        readahead_cap: int = option_default("readahead_chunks"),
        run_chunks: int = option_default("request_chunks"),
    ) -> None:
        self.content = content
        self._blocking = blocking
        self._memory: LRUCache[PieceKey, Piece] = LRUCache(maxsize=memory_bytes, getsizeof=len)
        # Small files fetched ahead wait for their first read outside the LRU and move into
        # it when read; the LRU gives up what they hold, so both stay within the budget.
        # In the LRU they were its oldest pieces as soon as a few reads came after them: in
        # a shuffled epoch (reads anywhere in the folder) 1,376 of 2,000 prefetched 64 KiB
        # files were pushed out unread and read again from the disk cache. ``_ahead``
        # counts them from when they are scheduled (sizes; at most ``prefetch_bytes``, half
        # the budget), ``_waiting`` holds those landed.
        self.prefetch_bytes = memory_bytes // 2
        self._ahead: dict[PieceKey, int] = {}
        self._ahead_bytes = 0
        self._waiting: dict[PieceKey, tuple[Piece, float]] = {}  # oldest first
        self._waiting_bytes = 0
        # fetched ahead into the disk cache only (a sweep past its memory): size, and
        # when scheduled; at most ``disk_ahead_bytes``
        self.disk_ahead_bytes = memory_bytes * _DISK_AHEAD_TIMES_MEMORY
        self._on_disk_ahead: dict[PieceKey, tuple[int, float]] = {}  # oldest first
        self._on_disk_ahead_bytes = 0
        self._inflight: dict[PieceKey, _Flight] = {}
        self._unreachable: TTLCache[PieceKey, _Unreachable] = TTLCache(
            maxsize=4096, ttl=_RETRY_ANSWERED_SECONDS)
        # digests of small files seen in the disk cache, so prefetch does not ask again
        self._on_disk: LRUCache[str, bool] = LRUCache(maxsize=_ON_DISK_REMEMBERED)
        # chunks fetched ahead wait in memory until read: a window larger than half the
        # budget would push out its own chunks before they are read
        self.readahead_cap = min(readahead_cap, memory_bytes // CHUNK_SIZE // 2)
        self.run_chunks = max(1, run_chunks)

    async def piece(self, entry: ManifestEntry, n: int) -> Piece:
        """Verified chunk ``n`` of ``entry`` (``-1``: the whole of a small entry)."""
        key = (piece_id(entry), n)
        if key in self._on_disk_ahead:  # read now, from wherever it is
            self._unread_gone(key)
        found = self._memory.get(key)
        if found is not None:
            return found
        if key in self._waiting:
            return self._first_read(key)
        failed = self._unreachable.get(key)
        if failed is not None:  # the kernel's retry of a read that just failed
            for k in failed.keys:
                self._unreachable.pop(k, None)
            raise RegistryUnavailable(f"{failed.why} (a moment ago; not asked again yet)")
        while True:
            flight = self._inflight.get(key)
            if flight is None:
                return (await self._fetch(entry, n, n + 1))[0]
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if key in self._waiting:
                return self._first_read(key)
            if flight.data is not None:
                return flight.data
            found = self._memory.get(key)  # a prefetch that gave up: fetch it ourselves
            if found is not None:
                return found

    async def _fetch(self, entry: ManifestEntry, first: int, stop: int) -> list[Piece]:
        """Fetch ``[first, stop)`` as one run (``first == -1``: a whole small entry)."""
        keys = [(piece_id(entry), n) for n in range(first, stop)]
        if first < 0:
            pieces = await self._flights(keys, self.content.whole, entry)
        else:
            pieces = await self._flights(keys, self.content.chunks, entry, first, stop)
        return cast(list[Piece], pieces)  # whole and chunks never answer None

    def _first_read(self, key: PieceKey) -> Piece:
        """A prefetched small file's first read: into the LRU with it, out of the budget."""
        data = self._waiting[key][0]
        self._unread_gone(key)
        self._remember(key, data)
        return data

    def _remember(self, key: PieceKey, data: Piece) -> None:
        """Keep a verified piece in the LRU, within what prefetched files leave of it."""
        with contextlib.suppress(ValueError):  # larger than the whole budget
            self._memory[key] = data
        self._trim()

    def _trim(self) -> None:
        limit = self._memory.maxsize - self._waiting_bytes
        while self._memory.currsize > limit and self._memory:
            self._memory.popitem()

    def _unread_gone(self, key: PieceKey) -> None:
        """A prefetched piece was read, left on disk or not fetched after all: it no longer
        counts against the prefetch budget."""
        size = self._ahead.pop(key, None)
        if size is not None:
            self._ahead_bytes -= size
            waiting = self._waiting.pop(key, None)
            if waiting is not None:
                self._waiting_bytes -= len(waiting[0])
        on_disk = self._on_disk_ahead.pop(key, None)
        if on_disk is not None:
            self._on_disk_ahead_bytes -= on_disk[0]

    async def _flights(
        self, keys: list[PieceKey], fetch: Callable[..., Any], *args: Any, quiet: bool = False
    ) -> list[Piece | None]:
        """Run ``fetch(*args)`` in a worker thread for the pieces ``keys``, with a flight per
        piece so that readers of any of them wait for it instead of fetching it again.

        Callers check that no key is in flight, with no await between that check and this
        call. ``quiet`` (prefetch): a failure is not handed to the waiting readers, who
        then fetch for themselves and meet (and report) the error on their own. Nor is a
        cancellation, ever: it belongs to the fetching task's scope (a read whose other
        chunk failed), and raised in a waiter's task it would escape every handler and end
        the mount.
        """
        flights = [_Flight() for _ in keys]
        for key, flight in zip(keys, flights, strict=True):
            self._inflight[key] = flight
        try:
            pieces = await self._blocking(_owned_pieces, fetch, *args)
            for key, flight, data in zip(keys, flights, pieces, strict=True):
                flight.data = data
                self._unreachable.pop(key, None)
                if data is None:  # a prefetch found it in the disk cache and left it there
                    self._unread_gone(key)
                    self._on_disk[key[0]] = True
                    continue
                if key in self._ahead:
                    self._waiting[key] = (data, time.monotonic())
                    self._waiting_bytes += len(data)
                    self._trim()
                elif key not in self._on_disk_ahead:  # those stay on disk only
                    self._remember(key, data)
                if key[1] == -1:
                    # a whole small file came from the disk cache or was just put there:
                    # prefetch need not ask (a hint only; a file evicted since is fetched
                    # when opened). Without it, reading out of listing order asked the
                    # cache about the same siblings at open after open.
                    self._on_disk[key[0]] = True
            return pieces
        except BaseException as exc:
            for key in keys:  # nothing of a failed or cancelled fetch is waiting to be read
                self._unread_gone(key)
            if not isinstance(exc, Exception):
                raise
            if not quiet:
                for flight in flights:
                    flight.error = exc
                if isinstance(exc, (RegistryUnavailable, trio.TooSlowError)):
                    failed = _Unreachable(str(exc) or "the registry did not answer in time",
                                          keys)
                    for key in keys:
                        self._unreachable[key] = failed
            raise
        finally:
            for key, flight in zip(keys, flights, strict=True):
                if self._inflight.get(key) is flight:
                    del self._inflight[key]
                flight.done.set()

    async def read(self, entry: ManifestEntry, offset: int, size: int) -> Piece:
        """Verified bytes ``[offset, offset + size)``, shorter only at the end of the file.

        Answers with a view into the cached piece where the range lies within one, so the
        bytes are copied once, into the kernel, and not on the way.
        """
        span = ChunkSpan.of(offset, size, entry.size)
        if span is None:
            return b""
        if not self.content.is_chunked(entry):
            return memoryview(await self.piece(entry, -1))[span.start : span.end]
        if span.count == 1:
            return span.cut([await self.piece(entry, span.first)])
        parts: list[Piece] = [b""] * span.count

        async def fetch(i: int) -> None:
            parts[i] = await self.piece(entry, span.first + i)

        try:
            async with trio.open_nursery() as nursery:
                for i in range(len(parts)):
                    nursery.start_soon(fetch, i)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        return span.cut(parts)

    def schedule_readahead(
        self, nursery: trio.Nursery, entry: ManifestEntry, state: ReadAhead, offset: int,
        size: int,
    ) -> None:
        """For a read ``state.advance`` found sequential, start fetching the chunks after it.

        Fetching starts again only once half the window has been read, and then asks for
        the whole gap in runs of up to ``run_chunks``: steady sequential reading becomes a
        few large range requests instead of one per chunk.
        """
        if not self.content.is_chunked(entry):
            return
        count = chunk_count(entry.size)
        current = (min(entry.size, offset + size) - 1) // CHUNK_SIZE
        start = max(current + 1, state.fetched_to)
        stop = min(count, current + 1 + state.window)
        if stop <= start or (start - current - 1) > state.window // 2:
            return
        state.fetched_to = stop
        run_start = -1
        for n in range(start, stop + 1):
            wanted = n < stop and not self._has(entry, n)
            if wanted and run_start < 0:
                run_start = n
            if run_start >= 0 and (not wanted or n - run_start == self.run_chunks):
                nursery.start_soon(self._prefetch, entry, run_start, n)
                run_start = n if wanted else -1

    def _has(self, entry: ManifestEntry, n: int) -> bool:
        key = (piece_id(entry), n)
        return key in self._memory or key in self._inflight or key in self._waiting

    def schedule_small(
        self, nursery: trio.Nursery, entries: list[ManifestEntry], *, sweep: bool = False
    ) -> int:
        """Fetch small files a reader is likely to open soon, in one batch, within the
        prefetch budget; how many of ``entries`` were gone through (the rest wait for a
        later look, when files fetched ahead have been read and freed budget).

        Each file costs a round trip that a reader would otherwise wait for on its own;
        fetched ahead, many per request, they are in memory when read. Files the disk cache
        holds are skipped (as quick to read when opened, and loading them early would only
        push out pieces in use); which ones those are is asked in the batch's own worker
        thread trip, and remembered.

        In listing order (``entries`` follow the file opened) a batch starts once a quarter
        of the window is missing, so steady reading asks for many files per request instead
        of one per open. A ``sweep`` (reads in another order, see ``SiblingWindow``) takes
        what the budget allows, but no fewer than a quarter of the window (or a quarter of
        the budget) unless the folder has no more: a batch per file read, as each frees
        its share, would cost a trip per file again.
        """
        room = self.prefetch_bytes - self._ahead_bytes
        disk_room = self.disk_ahead_bytes - self._on_disk_ahead_bytes if sweep else 0
        if room < self.prefetch_bytes // 4 and (self._waiting or self._on_disk_ahead):
            self._drop_stale()
            room = self.prefetch_bytes - self._ahead_bytes
            disk_room = self.disk_ahead_bytes - self._on_disk_ahead_bytes if sweep else 0
        batch: dict[PieceKey, ManifestEntry] = {}
        to_disk: set[PieceKey] = set()
        batch_bytes = 0
        gone_through = 0
        full = False
        for entry in entries:
            if entry.ref is None and not self.content.is_chunked(entry) and entry.size > 0:
                key = (entry.digest, -1)
                if not (key in self._memory or key in self._inflight or key in batch
                        or key in self._ahead or key in self._on_disk_ahead
                        or entry.digest in self._on_disk):
                    if entry.size <= room:
                        room -= entry.size
                    elif entry.size <= disk_room:
                        disk_room -= entry.size
                        to_disk.add(key)
                    else:
                        full = True
                        break
                    batch_bytes += entry.size
                    batch[key] = entry
            gone_through += 1
        enough = len(batch) >= len(entries) // 4 or batch_bytes >= self.prefetch_bytes // 4
        if not batch or (not enough and (not sweep or full)):
            return 0 if full else gone_through
        now = time.monotonic()
        for key, entry in batch.items():  # counted now: no await until the task starts
            if key in to_disk:
                self._on_disk_ahead[key] = (entry.size, now)
                self._on_disk_ahead_bytes += entry.size
            else:
                self._ahead[key] = entry.size
                self._ahead_bytes += entry.size
        nursery.start_soon(self._prefetch_small, list(batch.values()))
        return gone_through

    def _drop_stale(self) -> None:
        """Give up small files fetched ahead and unread for ``_STALE_WAIT_SECONDS``."""
        limit = time.monotonic() - _STALE_WAIT_SECONDS
        for held in (self._waiting, self._on_disk_ahead):
            while held:
                key, (_, since) = next(iter(held.items()))
                if since > limit:
                    break
                self._unread_gone(key)

    @property
    def prefetched_unread(self) -> int:
        """Bytes of small files fetched ahead (or being fetched) into memory, not read yet."""
        return self._ahead_bytes

    @property
    def prefetched_to_disk_unread(self) -> int:
        """Bytes of small files fetched ahead into the disk cache only, not read yet."""
        return self._on_disk_ahead_bytes

    async def _prefetch_small(self, entries: list[ManifestEntry]) -> None:
        todo = []
        for entry in entries:
            if self._has(entry, -1):  # a reader asked for it since it was scheduled
                self._unread_gone((entry.digest, -1))
            else:
                todo.append(entry)
        if not todo:
            return
        keys = [(entry.digest, -1) for entry in todo]  # no await since the _has checks
        try:
            await self._flights(keys, self.content.wholes_not_cached, todo, quiet=True)
        except Exception as exc:
            log.debug("prefetch of %d small files failed: %s", len(todo), exc)

    async def _prefetch(self, entry: ManifestEntry, first: int, stop: int) -> None:
        # a reader may have asked for some of these since this task was scheduled: fetch
        # only what is still missing (no await between this check and _fetch's flights)
        while first < stop and self._has(entry, first):
            first += 1
        end = first
        while end < stop and not self._has(entry, end):
            end += 1
        if end <= first:
            return
        keys = [(piece_id(entry), n) for n in range(first, end)]
        try:  # chunks only: small files are prefetched in batches (_prefetch_small)
            await self._flights(keys, self.content.chunks, entry, first, end, quiet=True)
        except Exception as exc:  # the reader will meet the error itself, and report it
            log.debug("prefetch of chunks %d-%d of %s failed: %s", first, end - 1,
                      entry.digest, exc)
