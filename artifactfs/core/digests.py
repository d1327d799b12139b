"""Entry digests, artifact digests and the streaming hasher that computes them in one pass.

An entry digest is base64 of the MD5 of the bytes (W&B's choice). Blobs are keyed on disk by
the hex form of that MD5 (base64 holds ``/``, which cannot be in a file name).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

from artifactfs.core.chunks import CHUNK_SIZE, BytesLike, ChunkIndex
from artifactfs.core.errors import InvalidManifest

__all__ = [
    "ContentDigest",
    "ContentHasher",
    "artifact_digest",
    "blob_key",
    "blob_key_or_none",
    "is_md5_digest",
    "md5_b64",
]

_MANIFEST_PREFIX = b"wandb-artifact-manifest-v1\n"


def md5_b64(data: BytesLike) -> str:
    """Entry digest of ``data``: ``b"hello"`` -> ``"XUFAKrxLKna5cZ2REBfFkg=="``."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def is_md5_digest(digest: str) -> bool:
    """True when ``digest`` is base64 of 16 bytes, the form of a stored entry's digest."""
    return blob_key_or_none(digest) is not None


def blob_key_or_none(digest: object) -> str | None:
    if not isinstance(digest, str) or len(digest) != 24:
        return None
    try:
        raw = base64.b64decode(digest, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def blob_key(digest: str) -> str:
    """Hex MD5 under which a blob with entry digest ``digest`` is stored and cached.

    Raises InvalidManifest when the digest is not base64 MD5 (for example a reference's ETag),
    because such an entry has no stored bytes.
    """
    key = blob_key_or_none(digest)
    if key is None:
        raise InvalidManifest(f"digest {digest!r} is not a base64 MD5; it names no stored blob")
    return key


def artifact_digest(entries: Iterable[tuple[str, str]]) -> str:
    """W&B's artifact digest over ``(path, digest)`` pairs: hex MD5 of a sorted listing."""
    h = hashlib.md5(_MANIFEST_PREFIX)
    for path, digest in sorted(entries):
        h.update(f"{path}:{digest}\n".encode())
    return h.hexdigest()


class ContentDigest:
    """What one pass over a blob yields: entry digest, size and, for large blobs, chunk index."""

    __slots__ = ("chunk_index", "digest", "size")

    def __init__(self, digest: str, size: int, chunk_index: ChunkIndex | None) -> None:
        self.digest = digest
        self.size = size
        self.chunk_index = chunk_index

    @property
    def key(self) -> str:
        return blob_key(self.digest)


class ContentHasher:
    """Feeds bytes once, yields MD5 and the per-chunk SHA-256 index together.

    The chunk index exists only for blobs larger than one chunk: smaller ones are fetched
    whole and checked by MD5 alone (DESIGN.md, decision 2).
    """

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self._chunk_size = chunk_size
        self._md5 = hashlib.md5()
        self._chunk = hashlib.sha256()
        self._in_chunk = 0
        self._size = 0
        self._hashes: list[bytes] = []

    def update(self, data: BytesLike) -> None:
        self._md5.update(data)
        view = memoryview(data)
        self._size += len(view)
        while view:
            take = min(len(view), self._chunk_size - self._in_chunk)
            self._chunk.update(view[:take])
            self._in_chunk += take
            view = view[take:]
            if self._in_chunk == self._chunk_size:
                self._hashes.append(self._chunk.digest())
                self._chunk = hashlib.sha256()
                self._in_chunk = 0

    def result(self) -> ContentDigest:
        hashes = list(self._hashes)
        if self._in_chunk:
            hashes.append(self._chunk.digest())
        index = (
            ChunkIndex(self._chunk_size, self._size, tuple(hashes))
            if self._size > self._chunk_size
            else None
        )
        digest = base64.b64encode(self._md5.digest()).decode("ascii")
        return ContentDigest(digest, self._size, index)
