"""The chunk index: SHA-256 of each fixed-size chunk of a large blob.

It lets the mount check a 1 MiB piece of a 1 GiB file without reading the rest. The registry
builds it when a blob arrives; the manifest entry carries the index's own SHA-256 in
``extra["chunkIndexSha256"]`` so a reader can trust an index it fetched.

Wire form (also the on-disk form): the 8 bytes ``AFCHIDX1``, chunk size and blob size as
big-endian unsigned 64-bit integers, then 32 bytes per chunk.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from artifactfs.core.errors import InvalidManifest

BytesLike = bytes | bytearray | memoryview
"""What a check, a digest or a cache takes: read buffers are often bytearrays, and slices
of them memoryviews; each of these is hashed and written without a copy."""

__all__ = ["CHUNK_INDEX_EXTRA_KEY", "CHUNK_SIZE", "BytesLike", "ChunkIndex", "ChunkSpan",
           "chunk_count"]

CHUNK_SIZE = 1 << 20
CHUNK_INDEX_EXTRA_KEY = "chunkIndexSha256"
_MAGIC = b"AFCHIDX1"
_HEADER = struct.Struct(">8sQQ")


def chunk_count(size: int, chunk_size: int = CHUNK_SIZE) -> int:
    """Number of chunks a blob of ``size`` bytes has (0 for an empty blob)."""
    return -(-size // chunk_size)


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """Bytes ``[start, end)`` of a blob cut in chunks: the chunks ``first`` to ``last``
    hold them. Every read of a chunked entry (the mount's, the SDK's) goes through here, so
    the offset arithmetic is written once."""

    start: int
    end: int
    first: int
    last: int
    chunk_size: int = CHUNK_SIZE

    @classmethod
    def of(cls, offset: int, size: int, total: int,
           chunk_size: int = CHUNK_SIZE) -> ChunkSpan | None:
        """The span of a read of ``size`` bytes at ``offset`` in a blob of ``total``
        bytes, cut short at its end; None when nothing is left to read there."""
        end = min(total, offset + size)
        if offset < 0 or offset >= end:
            return None
        return cls(offset, end, offset // chunk_size, (end - 1) // chunk_size, chunk_size)

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def cut(self, parts: Sequence[BytesLike]) -> memoryview | bytes:
        """The span's bytes out of its chunks (``parts[i]`` is chunk ``first + i``): a view
        into the one chunk when the span lies within one, else the pieces joined once."""
        if len(parts) != self.count:
            raise ValueError(f"a span of {self.count} chunks was given {len(parts)}")
        head = self.start - self.first * self.chunk_size
        if self.count == 1:
            return memoryview(parts[0])[head : head + self.end - self.start]
        views = [memoryview(p) for p in parts]
        views[0] = views[0][head:]
        views[-1] = views[-1][: self.end - self.last * self.chunk_size]
        return b"".join(views)


@dataclass(frozen=True, slots=True)
class ChunkIndex:
    chunk_size: int
    size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if self.chunk_size <= 0 or self.size < 0:
            raise InvalidManifest("chunk index has a non-positive chunk size or negative size")
        if len(self.hashes) != chunk_count(self.size, self.chunk_size):
            raise InvalidManifest(
                f"chunk index lists {len(self.hashes)} chunks for {self.size} bytes"
            )

    @property
    def count(self) -> int:
        return len(self.hashes)

    def bounds(self, n: int) -> tuple[int, int]:
        """Byte range ``[start, end)`` of chunk ``n``."""
        if not 0 <= n < self.count:
            raise IndexError(f"chunk {n} out of range 0..{self.count - 1}")
        start = n * self.chunk_size
        return start, min(start + self.chunk_size, self.size)

    def check(self, n: int, data: BytesLike) -> bool:
        """True when ``data`` is exactly chunk ``n``."""
        start, end = self.bounds(n)
        return len(data) == end - start and hashlib.sha256(data).digest() == self.hashes[n]

    def to_bytes(self) -> bytes:
        return _HEADER.pack(_MAGIC, self.chunk_size, self.size) + b"".join(self.hashes)

    def sha256(self) -> str:
        """Hex SHA-256 of the wire form; what a manifest entry records."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> ChunkIndex:
        """Parse the wire form; raises InvalidManifest when it is malformed."""
        if len(data) < _HEADER.size:
            raise InvalidManifest("chunk index is truncated")
        magic, chunk_size, size = _HEADER.unpack_from(data)
        body = data[_HEADER.size :]
        if magic != _MAGIC or len(body) % 32:
            raise InvalidManifest("chunk index is malformed")
        hashes = tuple(body[i : i + 32] for i in range(0, len(body), 32))
        return cls(chunk_size, size, hashes)
