"""Verified reads for the daemon: chunk fetches in worker threads, deduplicated, with a
bounded in-memory LRU of recent pieces and sequential read-ahead.

The kernel has several read requests of a file in flight at once, and they straddle chunk
boundaries; without this layer each of them would fetch (or read from the disk cache and
check) the chunks it touches. Here each piece has one flight that every reader of it waits
on, fetched alone, in a run of chunks (read-ahead) or in a batch of small files (prefetch),
and the verified piece stays in memory for the next requests.

Concurrency rules: ``_inflight``, ``_memory`` and ``_unreachable`` are only touched on the
event loop; the blocking fetch runs in a thread through ``VerifiedContent``, which is
thread-safe.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import trio
from cachetools import LRUCache, TTLCache

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.errors import RegistryUnavailable
from artifactfs.core.manifest import ManifestEntry
from artifactfs.registry import VerifiedContent
from artifactfs.registry.content import Piece

__all__ = ["ReadAhead", "SiblingWindow", "VerifiedReader", "first_error"]

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]
PieceKey = tuple[str, int]  # (digest, chunk number; -1 for a whole small file)

# How far behind the furthest read a read may land and still count as sequential: the
# kernel's own read-ahead keeps up to a few MiB of requests in flight.
_REORDER_SLACK = 8 * CHUNK_SIZE

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


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of an exception group: what a caller outside the nursery expects."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _owned_pieces(fetch: Callable[..., Any], *args: Any) -> list[Piece]:
    """``fetch(*args)`` (in a worker thread) as pieces that each own their bytes. A piece
    cut from a larger buffer (a chunk of a run, a small file of a batch answer) and kept in
    memory as a view would keep the whole buffer alive while the budget counts only its
    own length; copied here, only the pieces kept pay for it, not downloads."""
    result = fetch(*args)
    pieces: list[Piece] = result if isinstance(result, list) else [result]
    return [bytes(p) if isinstance(p, memoryview) and memoryview(p.obj).nbytes > p.nbytes
            else p for p in pieces]


class SiblingWindow:
    """When an open should look at the files after it for prefetching.

    A reader going through a folder in order needs the next ``window`` files looked at
    once per quarter window, not at every open: the look itself (which of them are in
    memory, in flight, on disk) was a quarter of the daemon's time per warm open. Any
    other order (shuffled, or two readers in one folder) looks at every open, as before.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._folders: LRUCache[Hashable, tuple[int, int]] = LRUCache(maxsize=4096)

    def due(self, folder: Hashable, index: int) -> bool:
        last, horizon = self._folders.get(folder, (-2, -1))
        if index == last + 1 and index + self.window - self.window // 4 < horizon:
            self._folders[folder] = (index, horizon)
            return False
        self._folders[folder] = (index, index + 1 + self.window)
        return True


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

        The kernel has several reads of one file in flight and they may be answered out of
        order, so a read a little behind the furthest one seen does not count as a seek.
        """
        if self.next_offset == -1:
            sequential = offset == 0
        else:
            sequential = self.next_offset - _REORDER_SLACK <= offset <= self.next_offset
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
        memory_bytes: int = 64 << 20,
        readahead_cap: int = 16,
        run_chunks: int = 8,
    ) -> None:
        self.content = content
        self._blocking = blocking
        self._memory: LRUCache[PieceKey, Piece] = LRUCache(maxsize=memory_bytes, getsizeof=len)
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
        key = (entry.digest, n)
        found = self._memory.get(key)
        if found is not None:
            return found
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
            if flight.data is not None:
                return flight.data
            found = self._memory.get(key)  # a prefetch that gave up: fetch it ourselves
            if found is not None:
                return found

    async def _fetch(self, entry: ManifestEntry, first: int, stop: int) -> list[Piece]:
        """Fetch ``[first, stop)`` as one run (``first == -1``: a whole small entry)."""
        keys = [(entry.digest, n) for n in range(first, stop)]
        if first < 0:
            return await self._flights(keys, self.content.whole, entry)
        return await self._flights(keys, self.content.chunks, entry, first, stop)

    async def _flights(
        self, keys: list[PieceKey], fetch: Callable[..., Any], *args: Any, quiet: bool = False
    ) -> list[Piece]:
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
                with contextlib.suppress(ValueError):  # larger than the whole budget
                    self._memory[key] = data
                if key[1] == -1:
                    # a whole small file came from the disk cache or was just put there:
                    # prefetch need not ask (a hint only; a file evicted since is fetched
                    # when opened). Without it, reading out of listing order asked the
                    # cache about the same siblings at open after open.
                    self._on_disk[key[0]] = True
            return pieces
        except Exception as exc:
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
        end = min(entry.size, offset + size)
        if offset >= end:
            return b""
        if not self.content.is_chunked(entry):
            return memoryview(await self.piece(entry, -1))[offset:end]
        first, last = offset // CHUNK_SIZE, (end - 1) // CHUNK_SIZE
        base = first * CHUNK_SIZE
        if first == last:
            data = await self.piece(entry, first)
            return memoryview(data)[offset - base : end - base]
        parts: list[Piece] = [b""] * (last - first + 1)

        async def fetch(i: int) -> None:
            parts[i] = await self.piece(entry, first + i)

        try:
            async with trio.open_nursery() as nursery:
                for i in range(len(parts)):
                    nursery.start_soon(fetch, i)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        views = [memoryview(p) for p in parts]
        views[0] = views[0][offset - base :]
        views[-1] = views[-1][: end - (last * CHUNK_SIZE)]
        return b"".join(views)

    def schedule_readahead(
        self, nursery: trio.Nursery, entry: ManifestEntry, state: ReadAhead, offset: int,
        size: int,
    ) -> None:
        """When a read arrives, start fetching the chunks after it if the handle reads
        sequentially.

        Fetching starts again only once half the window has been read, and then asks for
        the whole gap in runs of up to ``run_chunks``: steady sequential reading becomes a
        few large range requests instead of one per chunk.
        """
        if not self.content.is_chunked(entry) or not state.advance(offset, size):
            return
        count = -(-entry.size // CHUNK_SIZE)
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
        key = (entry.digest, n)
        return key in self._memory or key in self._inflight

    def schedule_small(self, nursery: trio.Nursery, entries: list[ManifestEntry]) -> None:
        """Fetch small files a reader is likely to open next (siblings after the one opened).

        Each costs a round trip that a reader going through a folder would otherwise wait
        for one at a time; fetched ahead, in parallel, they are in memory when opened. Files
        the disk cache holds are skipped (as quick to read when opened, and loading them
        early would only push out pieces in use); which ones those are is asked once per
        batch, in one worker thread, and remembered.
        """
        wanted = []
        for entry in entries:
            if entry.ref is not None or self.content.is_chunked(entry) or entry.size == 0:
                continue
            key = (entry.digest, -1)
            if key in self._memory or key in self._inflight or entry.digest in self._on_disk:
                continue
            wanted.append(entry)
        # wait until a quarter of the window is missing, then fetch it all in one batch:
        # steady reading asks for many files per request instead of one per open
        if wanted and len(wanted) >= len(entries) // 4:
            nursery.start_soon(self._prefetch_small, wanted)

    async def _prefetch_small(self, entries: list[ManifestEntry]) -> None:
        try:
            cached = await self._blocking(self.content.which_cached, entries)
        except Exception as exc:
            log.debug("could not look in the cache for prefetch: %s", exc)
            return
        batch: dict[str, ManifestEntry] = {}
        for entry, on_disk in zip(entries, cached, strict=True):
            if on_disk:
                self._on_disk[entry.digest] = True
            elif not self._has(entry, -1):
                batch.setdefault(entry.digest, entry)
        if not batch:
            return
        todo = list(batch.values())  # no await since the _has checks above
        keys = [(entry.digest, -1) for entry in todo]
        try:
            await self._flights(keys, functools.partial(self.content.wholes, uncached=True),
                                todo, quiet=True)
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
        keys = [(entry.digest, n) for n in range(first, end)]
        try:  # chunks only: small files are prefetched in batches (_prefetch_small)
            await self._flights(keys, self.content.chunks, entry, first, end, quiet=True)
        except Exception as exc:  # the reader will meet the error itself, and report it
            log.debug("prefetch of chunks %d-%d of %s failed: %s", first, end - 1,
                      entry.digest, exc)
