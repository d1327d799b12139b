"""Verified reads for the daemon: chunk fetches in worker threads, deduplicated, with a
bounded in-memory LRU of recent pieces and sequential read-ahead.

The kernel splits a read into requests of at most 128 KiB, often several in flight at once;
without this layer each of them would fetch (or read from the disk cache and check) the
whole 1 MiB chunk it falls in. Here the first request for a piece starts the fetch, the others
wait for it, and the verified piece stays in memory for the next requests.

Concurrency rules: ``_inflight`` and ``_memory`` are only touched on the event loop; the
blocking fetch runs in a thread through ``VerifiedContent``, which is thread-safe.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from cachetools import LRUCache

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.manifest import ManifestEntry
from artifactfs.registry import VerifiedContent

__all__ = ["ReadAhead", "VerifiedReader", "first_error"]

log = logging.getLogger(__name__)

Blocking = Callable[..., Awaitable[Any]]
PieceKey = tuple[str, int]  # (digest, chunk number; -1 for a whole small file)


def first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of an exception group: what a caller outside the nursery expects."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


@dataclass(slots=True)
class ReadAhead:
    """Per-handle state: how far sequential reading got and how far ahead to fetch."""

    next_offset: int = -1
    window: int = 0  # chunks
    fetched_to: int = 0  # first chunk not yet asked for by read-ahead
    cap: int = 8

    def advance(self, offset: int, size: int) -> bool:
        """Record a read; True when it continues the previous one (sequential)."""
        sequential = offset == self.next_offset or (offset == 0 and self.next_offset == -1)
        self.next_offset = offset + size
        if sequential:
            self.window = min(self.cap, max(1, self.window * 2))
        else:
            self.window = 0
        return sequential


@dataclass(slots=True)
class _Flight:
    done: trio.Event = field(default_factory=trio.Event)
    data: bytes | None = None
    error: BaseException | None = None


class VerifiedReader:
    def __init__(
        self,
        content: VerifiedContent,
        blocking: Blocking,
        *,
        memory_bytes: int = 64 << 20,
        readahead_cap: int = 8,
    ) -> None:
        self.content = content
        self._blocking = blocking
        self._memory: LRUCache[PieceKey, bytes] = LRUCache(maxsize=memory_bytes, getsizeof=len)
        self._inflight: dict[PieceKey, _Flight] = {}
        self.readahead_cap = readahead_cap

    async def piece(self, entry: ManifestEntry, n: int) -> bytes:
        """Verified chunk ``n`` of ``entry`` (``-1``: the whole of a small entry)."""
        key = (entry.digest, n)
        found = self._memory.get(key)
        if found is not None:
            return found
        flight = self._inflight.get(key)
        if flight is None:
            flight = _Flight()
            self._inflight[key] = flight
            try:
                if n < 0:
                    flight.data = await self._blocking(self.content.whole, entry)
                else:
                    flight.data = await self._blocking(self.content.chunk, entry, n)
                self._memory[key] = flight.data
            except BaseException as exc:
                flight.error = exc
                raise
            finally:
                del self._inflight[key]
                flight.done.set()
            return flight.data
        await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.data is not None
        return flight.data

    async def read(self, entry: ManifestEntry, offset: int, size: int) -> bytes:
        """Verified bytes ``[offset, offset + size)``, shorter only at the end of the file."""
        end = min(entry.size, offset + size)
        if offset >= end:
            return b""
        if not self.content.is_chunked(entry):
            return (await self.piece(entry, -1))[offset:end]
        first, last = offset // CHUNK_SIZE, (end - 1) // CHUNK_SIZE
        if first == last:
            data = await self.piece(entry, first)
            base = first * CHUNK_SIZE
            return data[offset - base : end - base]
        parts: list[bytes] = [b""] * (last - first + 1)

        async def fetch(i: int) -> None:
            parts[i] = await self.piece(entry, first + i)

        try:
            async with trio.open_nursery() as nursery:
                for i in range(len(parts)):
                    nursery.start_soon(fetch, i)
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        base = first * CHUNK_SIZE
        return b"".join(parts)[offset - base : end - base]

    def schedule_readahead(
        self, nursery: trio.Nursery, entry: ManifestEntry, state: ReadAhead, offset: int,
        size: int,
    ) -> None:
        """After a read, start fetching the next chunks if the handle reads sequentially."""
        if not self.content.is_chunked(entry) or not state.advance(offset, size):
            return
        count = -(-entry.size // CHUNK_SIZE)
        current = (offset + size - 1) // CHUNK_SIZE
        start = max(current + 1, state.fetched_to)
        stop = min(count, current + 1 + state.window)
        for n in range(start, stop):
            if (entry.digest, n) not in self._memory and (entry.digest, n) not in self._inflight:
                nursery.start_soon(self._prefetch, entry, n)
        state.fetched_to = max(state.fetched_to, stop)

    def schedule_small(self, nursery: trio.Nursery, entries: list[ManifestEntry]) -> None:
        """Fetch small files a reader is likely to open next (siblings after the one opened).

        Each costs a round trip that a reader going through a folder would otherwise wait
        for one at a time; fetched ahead, in parallel, they are in memory when opened.
        """
        for entry in entries:
            if entry.ref is not None or self.content.is_chunked(entry) or entry.size == 0:
                continue
            key = (entry.digest, -1)
            if key not in self._memory and key not in self._inflight:
                nursery.start_soon(self._prefetch_small, entry)

    async def _prefetch_small(self, entry: ManifestEntry) -> None:
        """Fetch a small file from the registry unless the disk cache has it already: a
        cached file is as quick to read when it is opened, and loading it into memory early
        would only push out pieces that are in use."""
        try:
            if not await self._blocking(self.content.is_cached, entry):
                await self.piece(entry, -1)
        except Exception as exc:
            log.debug("prefetch of %s failed: %s", entry.digest, exc)

    async def _prefetch(self, entry: ManifestEntry, n: int) -> None:
        try:
            await self.piece(entry, n)
        except Exception as exc:  # the reader will meet the error itself, and report it
            log.debug("read-ahead of chunk %d of %s failed: %s", n, entry.digest, exc)
