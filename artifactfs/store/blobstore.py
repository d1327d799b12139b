"""The one interface to where blob bytes live: a folder (``store/blobs.py``) or an S3 bucket
(``store/s3.py``).

Everything above it (the store's commit, ``BlobAccess``, the server) asks only what this
interface offers: whether and how large a blob is, a byte range of it, a whole batch of small
ones, its chunk index, a stream put under a digest it is checked against, and, where the
backend can, an address a client may read or write the bytes at without going through the
server (``presign_get``, ``start_upload``). The rule every implementation keeps: a blob never
becomes visible under a digest its bytes do not have, and a visible blob larger than one chunk
always has its chunk index.

Blobs are named by their entry digest (base64 MD5, ``core.digests``); a backend stores them
under the hex form (``blob_key``), one name per blob whatever base64 spelling a manifest used.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from artifactfs.core.chunks import BytesLike, ChunkIndex
from artifactfs.core.digests import ContentDigest
from artifactfs.core.errors import NotFound
from artifactfs.files import READ_BLOCK

__all__ = [
    "BatchTooLarge",
    "BlobSink",
    "BlobStore",
    "ByteStream",
    "StoredBlob",
    "UploadPart",
    "UploadPlan",
]

# what ``check_reachable`` asks about by default: the MD5 of no bytes, a blob that may or may
# not be stored (either answer says storage answered)
_PROBE_DIGEST = "1B2M2Y8AsgTpgAmY7PhCfg=="


class BatchTooLarge(ValueError):
    """The blobs asked for in one batch add up to more than its limit."""


class ByteStream(Protocol):
    """What ``open_range`` hands back: read it in blocks (``read(n)`` returns b"" at the end of
    the range), then close it. A file, or an S3 response body."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class BlobSink(Protocol):
    """One blob being received in pieces: nothing is visible until ``commit``, which checks
    the bytes against the promised digest (DigestMismatch, nothing stored, when they differ);
    ``abort`` (safe after ``commit``) drops whatever an unfinished write left."""

    digest: str

    def write(self, data: BytesLike) -> None: ...

    def commit(self) -> ContentDigest: ...

    def abort(self) -> None: ...


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A blob as ``gc`` sees it: its size and when its bytes were last written (a file's
    mtime, an object's LastModified), which is how gc knows a blob uploaded for a commit
    still in flight (it is younger than the grace) without a record of uploads."""

    digest: str
    size: int
    written_at: float


@dataclass(frozen=True, slots=True)
class UploadPart:
    """One request of an upload straight to storage: PUT bytes ``[start, end)`` of the blob
    to ``url`` with ``headers`` (a single PUT carries the blob's Content-MD5, which storage
    checks)."""

    number: int
    url: str
    start: int
    end: int
    headers: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "url": self.url, "start": self.start, "end": self.end,
                "headers": dict(self.headers)}


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """How a client uploads one blob straight to storage: every part, then the server is told
    ``upload_id`` is done (``finish_upload``) and checks the bytes before the blob counts."""

    upload_id: str
    parts: Sequence[UploadPart]

    def to_dict(self) -> dict[str, Any]:
        return {"upload_id": self.upload_id, "parts": [p.to_dict() for p in self.parts]}


class BlobStore(abc.ABC):
    """Content-addressed blob bytes, shared by every entity of a registry.

    Access control is not here (``store.blobs.BlobAccess`` is the store as one entity may
    reach it): a ``BlobStore`` answers whoever asks. Methods raise NotFound for a blob that is
    not stored, and RegistryUnavailable when the backend cannot be reached.
    """

    description: str
    """Where the blobs are, for messages and the server's start line (never a secret)."""

    # ---- reading ----------------------------------------------------------------------------

    @abc.abstractmethod
    def has(self, digest: str) -> bool:
        """Whether blob ``digest`` is stored (and visible: whole and checked)."""

    @abc.abstractmethod
    def size(self, digest: str) -> int:
        """The blob's size in bytes; NotFound when it is not stored."""

    def sizes(self, digests: Iterable[str]) -> dict[str, int | None]:
        """The size of each blob, None for one not stored. A backend where each answer is a
        round trip answers them in parallel: a commit asks this for every blob it names."""
        out: dict[str, int | None] = {}
        for digest in set(digests):
            try:
                out[digest] = self.size(digest)
            except NotFound:
                out[digest] = None
        return out

    def missing(self, digests: Iterable[str]) -> set[str]:
        """The digests among ``digests`` that have no blob here."""
        return {d for d, size in self.sizes(digests).items() if size is None}

    def check_reachable(self) -> None:
        """Raise RegistryUnavailable when the blobs cannot be reached now: the server's
        health route asks this every few seconds, so it costs one round trip at most. By
        default, whether one blob is stored (a HEAD of a bucket's object)."""
        self.has(_PROBE_DIGEST)

    def size_and_md5(self, digest: str) -> tuple[int, str | None]:
        """The blob's size, and its hex MD5 as the backend recorded it when it can tell
        without reading the bytes (an S3 object put in one piece: its ETag), else None; one
        round trip. NotFound when it is not stored. ``migrate`` checks a blob it finds at the
        target with it before skipping it."""
        return self.size(digest), None

    @abc.abstractmethod
    def read(self, digest: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of a blob (to its end when ``end`` is None), fewer only
        past its end."""

    @abc.abstractmethod
    def open_range(self, digest: str, start: int, end: int) -> ByteStream:
        """Bytes ``[start, end)`` of a blob as a stream, for a range too large to hold; the
        caller closes it."""

    @abc.abstractmethod
    def read_many(
        self, digests: Iterable[str], *, max_bytes: int | None = None
    ) -> list[bytes | None]:
        """Whole blobs in the order asked; None for one that is not here. Raises
        BatchTooLarge, having read nothing, when the blobs found add up to more than
        ``max_bytes``."""

    @abc.abstractmethod
    def chunk_index(self, digest: str) -> ChunkIndex | None:
        """The blob's chunk index, None for a blob of one chunk or less. Raises NotFound for
        a blob that is not here, DigestMismatch for a large one whose index is lost and whose
        bytes no longer match their digest."""

    @abc.abstractmethod
    def keys(self) -> Iterator[str]:
        """The digest of every stored blob, in no set order (for gc)."""

    # ---- garbage collection (store/gc.py) ----------------------------------------------------

    @abc.abstractmethod
    def listing(self) -> Iterator[StoredBlob]:
        """Every stored blob with its size and write time, in no set order."""

    @abc.abstractmethod
    def stats(self, digests: Iterable[str]) -> dict[str, StoredBlob | None]:
        """Size and write time of each blob now (None for one not stored): gc asks again,
        under its lock, just before it removes them."""

    @abc.abstractmethod
    def delete(self, digests: Sequence[str]) -> None:
        """Remove these blobs and their chunk indexes (the blob first: a visible blob always
        has its index); one already gone is no error."""

    # ---- writing ----------------------------------------------------------------------------

    @abc.abstractmethod
    def writer(self, digest: str) -> BlobSink:
        """An incremental writer for blob ``digest``; nothing is visible until its commit."""

    def put_stream(
        self, stream: BinaryIO, digest: str, *, on_bytes: Callable[[int], None] | None = None
    ) -> ContentDigest:
        """Store the bytes of ``stream`` as the blob ``digest``.

        Raises DigestMismatch, storing nothing, when the bytes have another digest. Storing a
        blob that is already present checks the bytes and stores the same bytes again.
        """
        writer = self.writer(digest)
        try:
            while block := stream.read(READ_BLOCK):
                writer.write(block)
                if on_bytes:
                    on_bytes(len(block))
            return writer.commit()
        finally:
            writer.abort()

    def put_file(
        self, path: Path, digest: str, *, on_bytes: Callable[[int], None] | None = None
    ) -> ContentDigest | None:
        """Store a local file as blob ``digest``; None when the blob was already here."""
        if self.has(digest):
            return None
        with open(path, "rb") as f:
            return self.put_stream(f, digest, on_bytes=on_bytes)

    # ---- addresses straight to storage --------------------------------------------------------

    def presign_get(self, digest: str, *, lifetime: int) -> str | None:
        """An address that reads the blob (with Range) for ``lifetime`` seconds without any
        other credential, or None when this backend has none (the server then sends the bytes
        itself). Does not check that the blob exists."""
        return None

    def start_upload(self, digest: str, size: int, *, lifetime: int) -> UploadPlan | None:
        """A plan for a client to upload blob ``digest`` of ``size`` bytes straight to
        storage, its addresses valid for ``lifetime`` seconds, or None when this backend takes
        uploads only through the server (``writer``)."""
        return None

    def finish_upload(self, digest: str, upload_id: str) -> ContentDigest:
        """Check what the client uploaded under ``upload_id`` and, when its bytes have
        ``digest``, make it the visible blob (with its chunk index). Raises DigestMismatch
        (the upload discarded, nothing visible) when they do not, NotFound when no such upload
        has bytes, InvalidRequest for an upload id this backend never made."""
        raise NotFound(f"upload {upload_id!r} not found")

    def close(self) -> None:
        """Release connections and threads (nothing for a folder)."""
        return
