"""The content-addressed blob folder (the embedded store's ``BlobStore``), and blob access.

Layout (also what a static web server serving the same folder exposes)::

    blobs/<hex[:2]>/<hex>        the bytes, hex = MD5 of the bytes
    chunks/<hex[:2]>/<hex>.idx   the chunk index of blobs larger than one chunk

A blob is written to ``tmp/``, checked against the digest it was promised to have, made
durable, given its chunk index, and only then renamed into place, so a blob that is visible is
always whole and right, and can be read by chunk.

Blobs are shared by every entity of the store (one copy of each file), but access is not:
``BlobAccess`` is a ``BlobStore`` (this folder or a bucket) as one entity may reach it, and
``signed_blob_url`` the short-lived address of a blob on a static server holding this folder.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from cachetools import TTLCache

from artifactfs.core.chunks import CHUNK_SIZE, BytesLike, ChunkIndex
from artifactfs.core.digests import ContentDigest, ContentHasher, blob_key
from artifactfs.core.errors import DigestMismatch, NotFound, RegistryUnavailable
from artifactfs.files import (
    READ_BLOCK,
    atomic_writer,
    create_temporary,
    hash_file,
    open_announced,
    read_fd,
)
from artifactfs.store.blobstore import (
    BatchTooLarge,
    BlobSink,
    BlobStore,
    ByteStream,
    StoredBlob,
    UploadPlan,
)

__all__ = [
    "BatchTooLarge",
    "BlobAccess",
    "BlobAccessRecord",
    "BlobDir",
    "BlobReceiver",
    "BlobWriter",
    "signed_blob_url",
]

log = logging.getLogger(__name__)

# files of a batch open at once: enough to keep the disk's queue busy, and few enough that
# the server's 40 worker threads, all reading batches, hold at most 640 files open (the
# usual soft limit is 1,024)
_READ_WINDOW = 16


class BlobDir(BlobStore):
    """Blobs as files of a local folder (the layout above): durable once visible (fsync of
    the bytes before the rename), and readable by a static web server of the same folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"blob folder {root}"
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

    def check_reachable(self) -> None:
        """A stat of the blob folder: a volume not mounted (or gone) has none, where
        ``has`` would only say that a blob is not there."""
        try:
            is_folder = self.blob_root.is_dir()
        except OSError as exc:  # a stale NFS handle, say
            raise RegistryUnavailable(f"{self.description}: {exc.strerror}") from None
        if not is_folder:
            raise RegistryUnavailable(f"{self.description}: {self.blob_root} is not there")

    def missing(self, digests: Iterable[str]) -> set[str]:
        return {d for d in set(digests) if not self.has(d)}

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def writer(self, digest: str) -> BlobWriter:
        return BlobWriter(self, digest)

    def write_index(self, digest: str, index: ChunkIndex) -> None:
        dest = self._index_path(digest)
        dest.parent.mkdir(exist_ok=True)
        with atomic_writer(dest, tmp_dir=self.tmp, durable=True) as out:
            out.write(index.to_bytes())

    def read(self, digest: str, start: int = 0, end: int | None = None) -> bytes:
        try:
            with open(self.path(digest), "rb") as f:
                f.seek(start)
                return f.read(-1 if end is None else max(0, end - start))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open_range(self, digest: str, start: int, end: int) -> ByteStream:
        try:
            f = open(self.path(digest), "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None
        f.seek(start)
        return _Bounded(f, end - start)

    def keys(self) -> Iterator[str]:
        for folder in os.scandir(self.blob_root):
            if folder.is_dir(follow_symlinks=False):
                for entry in os.scandir(folder.path):
                    digest = _digest_of(entry.name)
                    if digest is not None:
                        yield digest

    def listing(self) -> Iterator[StoredBlob]:
        for folder in os.scandir(self.blob_root):
            if folder.is_dir(follow_symlinks=False):
                for entry in os.scandir(folder.path):
                    digest = _digest_of(entry.name)
                    if digest is None:
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # removed since the folder was read
                        continue
                    yield StoredBlob(digest, st.st_size, st.st_mtime)

    def stats(self, digests: Iterable[str]) -> dict[str, StoredBlob | None]:
        out: dict[str, StoredBlob | None] = {}
        for digest in digests:
            try:
                st = self.path(digest).stat()
            except FileNotFoundError:
                out[digest] = None
            else:
                out[digest] = StoredBlob(digest, st.st_size, st.st_mtime)
        return out

    def delete(self, digests: Sequence[str]) -> None:
        for digest in digests:
            for path in (self.path(digest), self._index_path(digest)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def read_many(
        self, digests: Iterable[str], *, max_bytes: int | None = None
    ) -> list[bytes | None]:
        """A refused batch (BatchTooLarge) costs the disk no more than its sizes.

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


class _Bounded:
    """An open blob file that reads no further than the end of a range."""

    def __init__(self, file: BinaryIO, left: int) -> None:
        self._file = file
        self._left = left

    def read(self, size: int = -1, /) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        block = self._file.read(size) if size else b""
        self._left -= len(block)
        return block

    def close(self) -> None:
        self._file.close()


def _digest_of(name: str) -> str | None:
    """The entry digest of a file named by a hex MD5, None for anything else."""
    try:
        raw = bytes.fromhex(name)
    except ValueError:
        return None
    return base64.b64encode(raw).decode("ascii") if len(raw) == 16 else None


class BlobWriter(BlobSink):
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

    def write(self, data: BytesLike) -> None:
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


# ---- access: which entity may reach which blob ------------------------------------------------


class BlobAccessRecord(Protocol):
    """Where the store records which entity may reach which blob (``MetadataDB``).

    Blobs are named here by their key, the hex MD5 (``blob_key``): one name per blob, whatever
    base64 spelling a manifest used.
    """

    def accessible_blobs(self, entity: str, keys: Collection[str]) -> set[str]:
        """The keys among ``keys`` that ``entity`` may reach."""
        ...

    def grant_blobs(self, entity: str, keys: Iterable[str]) -> None:
        """Let ``entity`` reach the blobs ``keys`` from now on."""
        ...


# positive answers remembered per process: (entity, digest) pairs, about 200 bytes each, so the
# bound is some 13 MB; access is never withdrawn, so the ten minutes only bound how long an
# answer outlives a future removal, not correctness today
_KNOWN_MAX = 1 << 16
_KNOWN_TTL = 600.0


class BlobAccess:
    """The shared blob folder as one entity may reach it.

    Blobs are stored once, whoever uploaded them, but an MD5 is no secret (anyone holding a
    file, or having seen a manifest, knows it), so the bytes are no one's business but theirs
    who hold them: an entity reads, probes and names in its commits only the blobs it uploaded
    itself (with their bytes) or that its own versions reference. A blob it may not reach is
    answered exactly like one that is not stored (NotFound, "missing", None in a batch), so
    nothing tells the two apart.

    Every method takes the asking ``entity`` first; None stands for the store folder's owner
    (the embedded transport), who can read the files directly anyway and reaches every blob.

    Access is checked with one indexed query per call (one for all the digests of a batch), and
    answers that allow are remembered for ten minutes, so the mount's read path (ranged GETs and
    batches of the same blobs) costs a dictionary lookup once warm.
    """

    def __init__(self, blobs: BlobStore, record: BlobAccessRecord) -> None:
        self.blobs = blobs
        self._record = record
        self._known: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=_KNOWN_MAX,
                                                                 ttl=_KNOWN_TTL)
        self._lock = threading.Lock()  # TTLCache is not thread-safe; the server has 40 threads

    def readable(self, entity: str | None, digests: Iterable[str]) -> set[str]:
        """The digests among ``digests`` that ``entity`` may reach (stored or not).

        Raises InvalidManifest for a digest that is not base64 MD5 and not known already."""
        wanted = set(digests)
        if entity is None:
            return wanted
        # remembered by the digest as asked (no decoding on the warm path); the record is
        # asked by key, so another base64 spelling of the same MD5 only misses the memory
        with self._lock:
            unknown = [d for d in wanted if (entity, d) not in self._known]
        if not unknown:
            return wanted
        keys = {d: blob_key(d) for d in unknown}
        allowed = self._record.accessible_blobs(entity, set(keys.values()))
        found = {d for d, k in keys.items() if k in allowed}
        self._remember(entity, found)
        return (wanted - set(unknown)) | found

    def _remember(self, entity: str, digests: Iterable[str]) -> None:
        with self._lock:
            for digest in digests:
                self._known[(entity, digest)] = True

    def check(self, entity: str | None, digest: str) -> None:
        """Raises NotFound, worded as for a blob that is not stored, unless ``entity`` may
        reach ``digest``."""
        if not self.readable(entity, (digest,)):
            raise NotFound(f"blob {digest} not found")

    def grant(self, entity: str | None, digests: Iterable[str]) -> None:
        """Let ``entity`` reach ``digests`` (nothing to record for the owner)."""
        if entity is None:
            return
        wanted = set(digests)
        self._record.grant_blobs(entity, {blob_key(d) for d in wanted})
        self._remember(entity, wanted)

    def missing(self, entity: str | None, digests: Iterable[str]) -> set[str]:
        """The digests ``entity`` must upload: those it may not reach, stored or not (the
        upload then proves it holds the bytes), and those not stored at all."""
        wanted = set(digests)
        allowed = self.readable(entity, wanted)
        return (wanted - allowed) | self.blobs.missing(allowed)

    def size(self, entity: str | None, digest: str) -> int:
        self.check(entity, digest)
        return self.blobs.size(digest)

    def open_range(self, entity: str | None, digest: str, start: int, end: int
                   ) -> ByteStream:
        """Bytes ``[start, end)`` of the blob as a stream (the caller closes it); NotFound as
        in ``check`` or when it is not stored."""
        self.check(entity, digest)
        return self.blobs.open_range(digest, start, end)

    def presign_get(self, entity: str | None, digest: str, *, lifetime: int) -> str | None:
        """An address reading the blob straight from storage for ``lifetime`` seconds, None
        when the backend has none; NotFound as in ``size`` (also for a blob not stored: an
        address is handed out only for bytes that are there)."""
        self.size(entity, digest)
        return self.blobs.presign_get(digest, lifetime=lifetime)

    def read(self, entity: str | None, digest: str, start: int = 0,
             end: int | None = None) -> bytes:
        self.check(entity, digest)
        return self.blobs.read(digest, start, end)

    def read_many(
        self, entity: str | None, digests: Iterable[str], *, max_bytes: int | None = None
    ) -> list[bytes | None]:
        """``BlobDir.read_many`` over the blobs ``entity`` may reach; None for the others,
        whose sizes do not count towards ``max_bytes`` either (a 413 would tell them apart)."""
        wanted = list(digests)
        allowed = self.readable(entity, wanted)
        got = iter(self.blobs.read_many([d for d in wanted if d in allowed],
                                        max_bytes=max_bytes))
        return [next(got) if d in allowed else None for d in wanted]

    def chunk_index(self, entity: str | None, digest: str) -> ChunkIndex | None:
        self.check(entity, digest)
        return self.blobs.chunk_index(digest)

    def reaches(self, entity: str | None, digest: str) -> bool:
        """Whether ``digest`` is stored and ``entity`` may reach it: an upload of it then has
        nothing to add."""
        return bool(self.readable(entity, (digest,))) and self.blobs.has(digest)

    def start_upload(self, entity: str | None, digest: str, size: int, *, lifetime: int
                     ) -> UploadPlan | None:
        """Addresses for ``entity`` to upload ``digest`` straight to storage (None when the
        backend takes uploads only through the server). The upload gives access only once
        ``finish_upload`` found its bytes right, exactly as an upload through the server."""
        return self.blobs.start_upload(digest, size, lifetime=lifetime)

    def finish_upload(self, entity: str | None, digest: str, upload_id: str) -> ContentDigest:
        """Check an upload made by ``start_upload``'s plan and let ``entity`` reach the blob.
        Raises DigestMismatch (nothing visible, no access) when its bytes differ, NotFound
        when none arrived. The upload's id is known to its uploader alone, so no entity can
        finish another's upload to gain access to its bytes."""
        result = self.blobs.finish_upload(digest, upload_id)
        self.grant(entity, (digest,))
        return result

    def receiver(self, entity: str | None, digest: str) -> BlobReceiver | None:
        """Something to stream an upload of ``digest`` into, or None when ``entity`` already
        reaches that stored blob (there is nothing to receive; drain the body)."""
        stored = self.blobs.has(digest)
        if stored and self.readable(entity, (digest,)):
            return None
        return BlobReceiver(self, entity, digest, stored=stored)

    def put_stream(self, entity: str | None, stream: BinaryIO, digest: str, *,
                   on_bytes: Callable[[int], None] | None = None) -> bool:
        """Receive the bytes of ``stream`` as blob ``digest`` for ``entity``; False when it
        already reached that blob (``stream`` is then not read). Raises DigestMismatch."""
        receiver = self.receiver(entity, digest)
        if receiver is None:
            return False
        try:
            while block := stream.read(READ_BLOCK):
                receiver.write(block)
                if on_bytes:
                    on_bytes(len(block))
            receiver.commit()
        finally:
            receiver.abort()
        return True

    def put_file(self, entity: str | None, path: Path, digest: str, *,
                 on_bytes: Callable[[int], None] | None = None) -> bool:
        """``put_stream`` from a local file."""
        if self.reaches(entity, digest):
            return False
        with open(path, "rb") as f:
            return self.put_stream(entity, f, digest, on_bytes=on_bytes)


class BlobReceiver:
    """One upload of a blob for one entity: its bytes are checked against the digest, written
    only if no copy is stored yet, and the entity reaches the blob once they matched.

    When a copy is stored already (another entity's, say), the bytes are hashed (MD5 alone)
    and not written again: an upload must carry the whole file to gain access to it, so an
    entity that knows only a digest gains nothing.
    """

    def __init__(self, access: BlobAccess, entity: str | None, digest: str, *,
                 stored: bool) -> None:
        self._access = access
        self._entity = entity
        self.digest = digest
        self._writer: BlobSink | None = None if stored else access.blobs.writer(digest)
        self._md5 = hashlib.md5() if stored else None

    def write(self, data: BytesLike) -> None:
        if self._writer is not None:
            self._writer.write(data)
        else:
            assert self._md5 is not None
            self._md5.update(data)

    def commit(self) -> None:
        """Raises DigestMismatch (nothing stored, no access) when the bytes differ."""
        if self._writer is not None:
            self._writer.commit()
        else:
            assert self._md5 is not None
            found = base64.b64encode(self._md5.digest()).decode("ascii")
            if found != self.digest:
                raise DigestMismatch(
                    f"blob bytes have digest {found}, not the promised {self.digest}"
                )
        self._access.grant(self._entity, (self.digest,))

    def abort(self) -> None:
        """Safe after ``commit``; removes what an unfinished write left."""
        if self._writer is not None:
            self._writer.abort()


# ---- signed addresses on a static server of the same folder -----------------------------------


def signed_blob_url(base: str, digest: str, *, secret: str, expires: int) -> str:
    """The address of blob ``digest`` on a static server of this folder at ``base``, valid
    until ``expires`` (seconds since the epoch).

    The query carries the expiry and a signature in the form nginx's standard secure_link
    module checks, configured as::

        secure_link $arg_md5,$arg_expires;
        secure_link_md5 "$secure_link_expires$uri SECRET";

    that is base64url (no padding) of the MD5 of the expiry, the URL's path and the secret
    joined as written. A digest alone no longer makes a working address: only the registry,
    having checked the asker's access, hands one out, and it stops working soon after.
    """
    key = blob_key(digest)
    path = urlsplit(base).path.rstrip("/") + f"/blobs/{key[:2]}/{key}"
    signed = hashlib.md5(f"{expires}{path} {secret}".encode()).digest()
    token = base64.urlsafe_b64encode(signed).decode("ascii").rstrip("=")
    return f"{base.rstrip('/')}/blobs/{key[:2]}/{key}?md5={token}&expires={expires}"
