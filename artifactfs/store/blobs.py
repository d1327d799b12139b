"""The store's content-addressed blob folder.

Layout (also what a static web server serving the same folder exposes)::

    blobs/<hex[:2]>/<hex>        the bytes, hex = MD5 of the bytes
    chunks/<hex[:2]>/<hex>.idx   the chunk index of blobs larger than one chunk

A blob is written to ``tmp/``, checked against the digest it was promised to have, made
durable, given its chunk index, and only then renamed into place, so a blob that is visible is
always whole and right, and can be read by chunk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from artifactfs.core.chunks import CHUNK_SIZE, ChunkIndex
from artifactfs.core.digests import ContentDigest, ContentHasher, blob_key
from artifactfs.core.errors import DigestMismatch, NotFound
from artifactfs.store.files import (
    READ_BLOCK,
    atomic_writer,
    create_temporary,
    hash_file,
    open_announced,
    read_fd,
)

__all__ = ["BatchTooLarge", "BlobDir", "BlobWriter"]

log = logging.getLogger(__name__)

# files of a batch open at once: enough to keep the disk's queue busy, and few enough that
# the server's 40 worker threads, all reading batches, hold at most 640 files open (the
# usual soft limit is 1,024)
_READ_WINDOW = 16


class BatchTooLarge(ValueError):
    """The blobs asked for in one batch add up to more than its limit."""


class BlobDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_root = root / "blobs"
        self.chunk_root = root / "chunks"
        self.tmp = root / "tmp"
        for folder in (self.blob_root, self.chunk_root, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        key = blob_key(digest)
        return self.blob_root / key[:2] / key

    def _index_path(self, digest: str) -> Path:
        key = blob_key(digest)
        return self.chunk_root / key[:2] / f"{key}.idx"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def missing(self, digests: Iterable[str]) -> set[str]:
        """The digests among ``digests`` that have no blob here."""
        return {d for d in set(digests) if not self.has(d)}

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def writer(self, digest: str) -> BlobWriter:
        """An incremental writer for blob ``digest``; nothing is visible until ``commit``."""
        return BlobWriter(self, digest)

    def put_stream(
        self,
        stream: BinaryIO,
        digest: str,
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> ContentDigest:
        """Store the bytes of ``stream`` as the blob ``digest``.

        Raises DigestMismatch, storing nothing, when the bytes have another digest. Storing a
        blob that is already present checks the bytes and replaces it with the same bytes.
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

    def write_index(self, digest: str, index: ChunkIndex) -> None:
        dest = self._index_path(digest)
        dest.parent.mkdir(exist_ok=True)
        with atomic_writer(dest, tmp_dir=self.tmp, durable=True) as out:
            out.write(index.to_bytes())

    def read(self, digest: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of a blob (to its end when ``end`` is None)."""
        try:
            with open(self.path(digest), "rb") as f:
                f.seek(start)
                return f.read(-1 if end is None else max(0, end - start))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read_many(
        self, digests: Iterable[str], *, max_bytes: int | None = None
    ) -> list[bytes | None]:
        """Whole blobs in the order asked; None for one that is not here.

        Raises BatchTooLarge, having read nothing, when the blobs found add up to more
        than ``max_bytes``: a refused batch costs the disk no more than its sizes.

        The files are then read a window at a time, each window announced to the disk
        first (``open_announced``): a batch of 34 small blobs from a dropped page cache
        took 17 to 20 ms read one after another, 11 to 14 ms announced.
        """
        wanted = list(digests)
        if max_bytes is not None:
            total = 0
            for digest in wanted:
                with contextlib.suppress(NotFound):
                    total += self.size(digest)
            if total > max_bytes:
                raise BatchTooLarge(f"blobs of a batch exceed {max_bytes} bytes")
        out: list[bytes | None] = []
        for start in range(0, len(wanted), _READ_WINDOW):
            window = wanted[start : start + _READ_WINDOW]
            with open_announced(self.path(d) for d in window) as fds:
                out.extend(None if fd is None else read_fd(fd, os.fstat(fd).st_size)
                           for fd in fds)
        return out

    def chunk_index(self, digest: str) -> ChunkIndex | None:
        """The blob's chunk index, None for a blob of one chunk or less.

        Raises NotFound for a blob that is not here, and DigestMismatch for a large one
        whose index is missing and whose bytes no longer match their digest."""
        try:
            return ChunkIndex.from_bytes(self._index_path(digest).read_bytes())
        except FileNotFoundError:
            pass
        if self.size(digest) <= CHUNK_SIZE:  # NotFound when the blob is not here either
            return None
        # a large blob without its index (lost, or written by an older version that
        # published the blob first): built again from the blob, once its digest is checked
        log.warning("blob %s has no chunk index; building it again", digest)
        found = hash_file(self.path(digest))
        if found.digest != digest or found.chunk_index is None:
            raise DigestMismatch(f"blob {digest} is damaged: its bytes have digest "
                                 f"{found.digest}")
        try:
            self.write_index(digest, found.chunk_index)
        except OSError as exc:  # a read-only store: still answered, built again next time
            log.warning("could not keep the chunk index of blob %s: %s", digest, exc)
        return found.chunk_index

    def remove_tmp_leftovers(self, older_than: float = 86400.0) -> None:
        """Drop temporary files a crashed writer left behind (they were never visible).

        Only old ones: a younger file may belong to a writer in another process right now.
        """
        limit = time.time() - older_than
        for entry in os.scandir(self.tmp):
            with contextlib.suppress(FileNotFoundError):
                if entry.name.startswith(".tmp-") and entry.stat().st_mtime < limit:
                    os.unlink(entry.path)


class BlobWriter:
    """Receives a blob's bytes in pieces, then checks and publishes them in one rename.

    ``abort`` (safe after ``commit``) removes the temporary file; a crash leaves only a
    temporary file under ``tmp/`` (and perhaps the blob's chunk index, written again with
    the blob), never a visible blob.
    """

    def __init__(self, blobs: BlobDir, digest: str) -> None:
        self._blobs = blobs
        self.digest = digest
        self.dest = blobs.path(digest)
        self._hasher = ContentHasher()
        fd, self._tmp = create_temporary(blobs.tmp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes | memoryview) -> None:
        assert self._file is not None, "writer already finished"
        self._hasher.update(data)
        self._file.write(data)

    def commit(self) -> ContentDigest:
        """Publish the blob; DigestMismatch (nothing stored) if the bytes differ."""
        assert self._file is not None, "writer already finished"
        result = self._hasher.result()
        if result.digest != self.digest:
            raise DigestMismatch(
                f"blob bytes have digest {result.digest}, not the promised {self.digest}"
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        # the index first: a crash between the two then leaves an index without its blob
        # (written again with the blob), never a visible blob that cannot be read by chunk
        if result.chunk_index is not None:
            self._blobs.write_index(self.digest, result.chunk_index)
        self.dest.parent.mkdir(exist_ok=True)
        os.replace(self._tmp, self.dest)
        return result

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        # also after a commit that failed part way; after one that succeeded the temporary
        # name is gone (renamed), and no other writer ever takes it again
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
