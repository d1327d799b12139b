"""Verified bytes of manifest entries, through the shared cache.

This is the one place bytes come from for both the SDK and the mount. It enforces
docs/architecture.md, "Verification": an entry no larger than one chunk is fetched whole
and its MD5 checked (and its XXH128 digest, for an entry that has one: the MD5 names its
blob, the XXH128 digest is what the manifest says of it); a larger one is fetched chunk by
chunk, each checked against the blob's chunk index, whose own SHA-256 is checked against
the manifest entry when the entry records it. A piece that fails is fetched once more; a
second failure raises DigestMismatch. Nothing unverified is returned or cached. What comes
back from the disk cache was verified so before it was put there, and the cache checks
each file against the checksum it was put with on every read (bit rot); a damaged file is
a miss, fetched and verified here again.

Thread-safe: the mount calls it from worker threads.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import xxhash
from cachetools import LRUCache

from artifactfs.cache import ContentCache
from artifactfs.content.artifact_refs import ArtifactReferences
from artifactfs.content.references import ReferenceContent
from artifactfs.core.chunks import CHUNK_SIZE, BytesLike, ChunkIndex, ChunkSpan
from artifactfs.core.digests import XXH128, blob_key, md5_b64, xxh128_b64
from artifactfs.core.errors import DigestMismatch, InvalidManifest
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.wire import BATCH_MAX_BLOBS, BATCH_MAX_BYTES
from artifactfs.files import atomic_writer
from artifactfs.registry.base import Registry

__all__ = ["FetchStats", "Piece", "VerifiedContent"]

log = logging.getLogger(__name__)

_ATTEMPTS = 2

# Verified bytes: a view into a larger fetched run where that saves a copy.
Piece = bytes | bytearray | memoryview

# Chunks a download asks for per request: few requests per GiB, bounded memory per thread.
DOWNLOAD_RUN = 8


def _whole_matches(entry: ManifestEntry, data: BytesLike) -> bool:
    """``data`` is the entry's bytes: its length, the MD5 that names its blob and, for an
    XXH128 entry, the digest the manifest gives."""
    return (
        len(data) == entry.size
        and md5_b64(data) == entry.stored_digest
        and (entry.algorithm != XXH128 or xxh128_b64(data) == entry.digest)
    )


def _blob_digest(entry: ManifestEntry) -> str:
    """The base64 MD5 a registry stores ``entry``'s bytes under."""
    digest = entry.stored_digest
    if digest is None:
        if entry.ref is not None:  # read at its source (ReferenceContent), never as a blob
            raise InvalidManifest(f"entry {entry.path!r} is a reference to {entry.ref}; it "
                                  "has no stored blob")
        raise InvalidManifest(f"entry {entry.path!r} has an XXH128 digest and no extra.md5; "
                              "its stored bytes cannot be named")
    return digest


def _batches(indexes: list[int], sizes: list[int]) -> list[list[int]]:
    """Split ``indexes`` into groups a registry answers in one batch (count and bytes)."""
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in indexes:
        if current and (len(current) == BATCH_MAX_BLOBS or total + sizes[i] > BATCH_MAX_BYTES):
            groups.append(current)
            current, total = [], 0
        current.append(i)
        total += sizes[i]
    if current:
        groups.append(current)
    return groups


class FetchStats:
    """Counters of what crossed from the registry, for tests and benchmarks: requests (a
    batch of small files is one) and the bytes they brought."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += nbytes

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "bytes": self.bytes}


class VerifiedContent:
    def __init__(self, registry: Registry, cache: ContentCache) -> None:
        self.registry = registry
        self.cache = cache
        self.stats = FetchStats()
        self._indexes: LRUCache[str, ChunkIndex] = LRUCache(maxsize=4096)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self._side = ThreadPoolExecutor(4, thread_name_prefix="artifactfs-index")
        self._index_flights: dict[str, Future[ChunkIndex]] = {}
        # entries whose bytes are at a URI (file://, http(s)://, s3://): read and checked
        # by their own rules (content/references.py); each public method below hands them
        # there first. A scheme resolved through the registry instead (wandb-artifact://)
        # dispatches before these.
        self.references = ReferenceContent(cache, self.stats.add)
        self.artifact_refs = ArtifactReferences(registry)

    def close(self) -> None:
        """Let go of the references' HTTP connections (the registry is the caller's)."""
        self.references.close()

    def _readable(self, entry: ManifestEntry) -> ManifestEntry:
        """The entry whose bytes ``entry`` holds: a ``wandb-artifact://`` reference reads
        as the entry it names (content/artifact_refs.py; that may be a reference to a URI
        in turn), anything else as itself."""
        return entry if entry.ref is None else self.artifact_refs.resolve(entry)

    # ---- pieces --------------------------------------------------------------------------

    @staticmethod
    def is_chunked(entry: ManifestEntry) -> bool:
        return entry.size > CHUNK_SIZE

    def _stored_key(self, entry: ManifestEntry) -> str:
        return blob_key(_blob_digest(entry))

    def whole(self, entry: ManifestEntry, attempts: int = _ATTEMPTS) -> Piece:
        """All bytes of an entry no larger than one chunk, MD5-checked."""
        entry = self._readable(entry)
        if entry.ref is not None:
            return self.references.whole(entry)
        key = self._stored_key(entry)
        if entry.size == 0:
            return self._checked_empty(entry)
        cached = self._cached(key, entry.size)
        if cached is not None:
            return cached
        for attempt in range(_ATTEMPTS - attempts, _ATTEMPTS):
            data = self.registry.read_blob(_blob_digest(entry), 0, entry.size)
            if self._accept_whole(entry, data, attempt):
                return data
        raise DigestMismatch(f"blob {entry.digest} of {entry.path!r} failed verification twice")

    def wholes(self, entries: list[ManifestEntry], *, uncached: bool = False) -> list[Piece]:
        """``whole`` of several small entries: the ones the disk cache lacks are fetched in
        one request (``Registry.read_blobs``); one that fails its check, or that the batch
        lacked, goes through ``whole`` on its own (a second try, then DigestMismatch).
        ``uncached``: the caller just found none of them in the cache; do not look again."""
        entries = [self._readable(e) for e in entries]
        if any(entry.ref is not None for entry in entries):  # each by its own source
            return [self.whole(entry) for entry in entries]
        found: list[Piece | None] = []
        missing: list[int] = []
        tried: set[int] = set()
        for i, entry in enumerate(entries):
            key = self._stored_key(entry)
            cached = None
            if entry.size > 0 and not uncached:
                cached = self._cached(key, entry.size)
            found.append(cached)
            if cached is None and entry.size > 0:
                missing.append(i)
        for group in _batches(missing, [e.size for e in entries]):
            fetched = self.registry.read_blobs([_blob_digest(entries[i]) for i in group])
            self.stats.add(sum(len(data) for data in fetched if data is not None))
            for i, data in zip(group, fetched, strict=True):
                entry = entries[i]
                if data is None:
                    continue
                tried.add(i)
                if self._accept_whole(entry, data, 0, counted=True):
                    found[i] = data
        return [
            p if p is not None else self.whole(e, attempts=1 if i in tried else _ATTEMPTS)
            for i, (e, p) in enumerate(zip(entries, found, strict=True))
        ]

    def _cached(self, key: str, size: int) -> bytes | None:
        """The disk cache's bytes of ``key`` if they have the length the caller expects: a
        manifest entry naming a known digest with another size must not be answered with
        the bytes of the right size (nor their length be trusted for its reads)."""
        cached = self.cache.get(key)
        if cached is not None and len(cached) != size:
            log.warning("cache file %s holds %d bytes, not %d; dropping it", key, len(cached),
                        size)
            self.cache.discard(key)
            return None
        return cached

    def _accept_whole(self, entry: ManifestEntry, data: Piece, attempt: int, *,
                      counted: bool = False) -> bool:
        """Count fetched bytes of a small entry (unless its batch ``counted`` them, as one
        request) and cache them if they pass the check: one hash of the bytes (two for an
        XXH128 entry), and the cache's own checksum computed as they are written, with no
        read back."""
        if not counted:
            self.stats.add(len(data))
        if _whole_matches(entry, data):
            self.cache.put(self._stored_key(entry), data)
            return True
        log.warning("blob %s for %r failed its digest check (attempt %d)", entry.digest,
                    entry.path, attempt + 1)
        return False

    def _checked_empty(self, entry: ManifestEntry) -> bytes:
        if not _whole_matches(entry, b""):
            raise DigestMismatch(f"empty entry {entry.path!r} has digest {entry.digest}")
        return b""

    def index(self, entry: ManifestEntry) -> ChunkIndex:
        """The chunk index of a large entry, checked against the manifest when it can be."""
        entry = self._readable(entry)
        if entry.ref is not None:
            return self.references.index(entry)
        key = self._stored_key(entry)
        with self._lock:
            found = self._indexes.get(_index_memo(entry))
        if found is not None:
            return found
        expected = entry.chunk_index_sha256

        def accepted(raw: bytes) -> ChunkIndex | None:
            try:
                index = ChunkIndex.from_bytes(raw)
            except InvalidManifest:
                return None
            if expected is not None and hashlib.sha256(raw).hexdigest() != expected:
                return None
            # the reader places chunk n at n * CHUNK_SIZE: an index cut otherwise would
            # check the wrong bytes (and pass them), so it is refused like a bad one
            if index.size != entry.size or index.count == 0 or index.chunk_size != CHUNK_SIZE:
                return None
            return index

        # checked here on every load (a few KiB), not only by the disk cache's checksum:
        # the file may have been put for an entry that named no hash, trusting the registry
        raw = self.cache.get(key + ".idx")
        index = accepted(raw) if raw is not None else None
        if raw is not None and index is None:
            self.cache.discard(key + ".idx")
        attempts = 0
        while index is None and attempts < _ATTEMPTS:
            attempts += 1
            fetched = self.registry.chunk_index(_blob_digest(entry))
            self.stats.add(0)
            raw = fetched.to_bytes() if fetched is not None else b""
            index = accepted(raw)
            if index is not None:
                self.cache.put(key + ".idx", raw)
        if index is None:
            raise DigestMismatch(
                f"chunk index of blob {entry.digest} ({entry.path!r}) is missing or "
                "does not match the manifest"
            )
        with self._lock:
            self._indexes[_index_memo(entry)] = index
        return index

    def chunk(self, entry: ManifestEntry, n: int) -> Piece:
        """Chunk ``n`` of a large entry, SHA-256-checked."""
        return self.chunks(entry, n, n + 1)[0]

    def chunks(self, entry: ManifestEntry, first: int, stop: int) -> list[Piece]:
        """Chunks ``[first, stop)`` of a large entry, each SHA-256-checked.

        Chunks the disk cache holds come from there; each run of missing ones is fetched with
        one range request, since per-request cost, not bandwidth, is what limits a stream of
        1 MiB requests. A chunk that fails its check is fetched once more on its own.
        """
        entry = self._readable(entry)
        if entry.ref is not None:
            return self.references.chunks(entry, first, stop)
        key = self._stored_key(entry)
        with self._lock:
            index = self._indexes.get(_index_memo(entry))
        found: list[Piece | None] = [None] * (stop - first)
        tried = [False] * (stop - first)
        if index is None:
            # the first read of a file needs its index and its bytes: ask for both at once
            # rather than one after the other (time to first byte)
            pending = self._index_soon(entry)
            if not self.cache.contains(f"{key}.c{first}"):
                early = self._fetch_run(entry, first, stop)
                index = pending.result()
                self._accept_run(entry, index, first, early, found, tried, 0)
            else:
                index = pending.result()
        if not any(tried):
            found = self._cached_chunks(key, index, first, stop)
        i = 0
        while i < len(found):  # fetch each run of chunks still missing in one request
            if found[i] is not None or tried[i]:
                i += 1
                continue
            j = i
            while j < len(found) and found[j] is None and not tried[j]:
                j += 1
            run = self._fetch_run(entry, first + i, first + j)
            self._accept_run(entry, index, first, run, found, tried, i)
            i = j
        out: list[Piece] = []
        for i, piece in enumerate(found):
            if piece is None:
                piece = self._refetch(entry, index, first + i)
            out.append(piece)
        return out

    def _cached_chunks(self, key: str, index: ChunkIndex, first: int, stop: int
                       ) -> list[Piece | None]:
        """Chunks ``[first, stop)`` the disk cache holds (None for the others), each of the
        length ``index`` gives it (one of another length is dropped, as in ``_cached``)."""
        names = [f"{key}.c{n}" for n in range(first, stop)]
        found: list[Piece | None] = list(self.cache.get_many(names))
        for i, piece in enumerate(found):
            start, end = index.bounds(first + i)
            if piece is not None and len(piece) != end - start:
                log.warning("cache file %s holds %d bytes, not %d; dropping it", names[i],
                            len(piece), end - start)
                self.cache.discard(names[i])
                found[i] = None
        return found

    def _index_soon(self, entry: ManifestEntry) -> Future[ChunkIndex]:
        """The index of ``entry`` fetched in the side pool, one fetch however many ask."""
        key = _index_memo(entry)
        with self._lock:
            pending = self._index_flights.get(key)
            created = pending is None
            if pending is None:
                pending = self._side.submit(self.index, entry)
                self._index_flights[key] = pending
        if created:  # outside the lock: a future already done runs its callback right here
            pending.add_done_callback(lambda _: self._forget_index_flight(key, pending))
        return pending

    def _forget_index_flight(self, key: str, pending: Future[ChunkIndex]) -> None:
        with self._lock:
            if self._index_flights.get(key) is pending:
                del self._index_flights[key]

    def _fetch_run(self, entry: ManifestEntry, first: int, stop: int) -> memoryview:
        start = first * CHUNK_SIZE
        data = self.registry.read_blob(_blob_digest(entry), start,
                                       min(entry.size, stop * CHUNK_SIZE))
        self.stats.add(len(data))
        return memoryview(data)

    def _accept_run(
        self, entry: ManifestEntry, index: ChunkIndex, first: int, run: memoryview,
        found: list[Piece | None], tried: list[bool], offset: int,
    ) -> None:
        """Check each chunk of a fetched run and cache the good ones; bad ones stay None."""
        key = self._stored_key(entry)
        pos = 0
        i = offset
        while pos < len(run) and i < len(found):
            n = first + i
            start, end = index.bounds(n)
            piece = run[pos : pos + end - start]
            pos += end - start
            tried[i] = True
            if index.check(n, piece):
                self.cache.put(f"{key}.c{n}", piece)
                found[i] = piece
            else:
                log.warning(
                    "chunk %d of blob %s for %r failed its check (attempt 1)", n, entry.digest,
                    entry.path,
                )
            i += 1

    def _refetch(self, entry: ManifestEntry, index: ChunkIndex, n: int) -> Piece:
        """The last try for a chunk that was bad (or short) in its run."""
        start, end = index.bounds(n)
        data = self.registry.read_blob(_blob_digest(entry), start, end)
        self.stats.add(len(data))
        if index.check(n, data):
            self.cache.put(f"{self._stored_key(entry)}.c{n}", data)
            return data
        log.warning(
            "chunk %d of blob %s for %r failed its check (attempt 2)", n, entry.digest,
            entry.path,
        )
        raise DigestMismatch(
            f"chunk {n} of blob {entry.digest} ({entry.path!r}) failed verification twice"
        )

    def which_cached(self, entries: list[ManifestEntry]) -> list[bool]:
        """For each entry, whether the disk cache holds its whole bytes."""
        readable = [self._readable(entry) for entry in entries]
        return [self.references.contains(entry) if entry.ref is not None
                else self.cache.contains(self._stored_key(entry)) for entry in readable]

    def wholes_not_cached(self, entries: list[ManifestEntry]) -> list[Piece | None]:
        """For prefetch: ``wholes`` of the small entries the disk cache lacks (one batch
        request, each MD5-checked and cached), None for the ones it holds, which are not
        read (a read of them finds them there). One worker-thread trip where asking the
        cache first and fetching after took two."""
        on_disk = self.which_cached(entries)
        missing = [entry for entry, cached in zip(entries, on_disk, strict=True) if not cached]
        fetched = iter(self.wholes(missing, uncached=True) if missing else ())
        return [None if cached else next(fetched) for cached in on_disk]

    # ---- whole reads ---------------------------------------------------------------------

    def read(self, entry: ManifestEntry, offset: int, size: int) -> Piece:
        """Verified bytes ``[offset, offset + size)`` of an entry (shorter at its end)."""
        entry = self._readable(entry)
        span = ChunkSpan.of(offset, size, entry.size)
        if span is None:
            return b""
        if not self.is_chunked(entry):
            return self.whole(entry)[span.start : span.end]
        return bytes(span.cut(self.chunks(entry, span.first, span.last + 1)))

    def download(
        self, entry: ManifestEntry, dest: Path, on_bytes: Callable[[int], None] | None = None
    ) -> None:
        """Write the entry's verified bytes to ``dest`` atomically (parents must exist).

        A large entry's chunks, each checked against the chunk index, are also hashed
        together against the entry's MD5 (and XXH128 digest) as they are written (the index
        could be the registry's word alone). A small entry's bytes were checked by ``whole``
        (or put in the cache so checked): hashing them again was a second pass over every
        byte.
        """
        entry = self._readable(entry)
        if entry.ref is not None:
            self.references.download(entry, dest, on_bytes)
            return
        if not self.is_chunked(entry):
            with atomic_writer(dest) as out:
                data = self.whole(entry)
                out.write(data)
            if on_bytes:
                on_bytes(len(data))
            return
        md5 = hashlib.md5()
        xxh = xxhash.xxh128() if entry.algorithm == XXH128 else None
        with atomic_writer(dest) as out:
            count = self.index(entry).count
            for first in range(0, count, DOWNLOAD_RUN):
                for data in self.chunks(entry, first, min(count, first + DOWNLOAD_RUN)):
                    md5.update(data)
                    if xxh is not None:
                        xxh.update(data)
                    out.write(data)
                    if on_bytes:
                        on_bytes(len(data))
            if base64.b64encode(md5.digest()).decode() != entry.stored_digest or (
                    xxh is not None and base64.b64encode(xxh.digest()).decode() != entry.digest):
                raise DigestMismatch(
                    f"{entry.path!r}: assembled bytes do not match digest {entry.digest}"
                )


def _index_memo(entry: ManifestEntry) -> str:
    """What a chunk index is remembered by in memory: its blob, and the hash the entry
    expects of it. An index accepted for an entry that names no hash (trusting the
    registry) must not serve, unchecked, an entry that names one."""
    return f"{blob_key(_blob_digest(entry))}#{entry.chunk_index_sha256 or ''}"
