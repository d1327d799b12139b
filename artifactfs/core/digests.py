"""Entry digests, artifact digests and the streaming hasher that computes them in one pass.

An entry digest is base64 of the 16-byte hash of the bytes: MD5 (W&B's default), or XXH3-128
for artifacts made with ``digest_algorithm="XXH128"`` (W&B 0.29 and later, which marks such
entries ``extra.alg = "XXH128"``). Both have the same shape, so only ``extra.alg`` tells them
apart.

Blobs are stored and cached under the hex form of their MD5 whatever the entry's algorithm
(base64 holds ``/``, which cannot be in a file name): one name per blob, so the same bytes
logged by an MD5 artifact and an XXH128 one are stored once. An XXH128 entry therefore also
carries the MD5 of its bytes, in ``extra.md5`` (artifactfs's own key; W&B keeps ``extra``
as it is and leaves it out of the artifact digest).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from typing import Any

import xxhash

from artifactfs.core.chunks import CHUNK_INDEX_EXTRA_KEY, CHUNK_SIZE, BytesLike, ChunkIndex
from artifactfs.core.errors import InvalidManifest

__all__ = [
    "ALG_EXTRA_KEY",
    "DIGEST_ALGORITHMS",
    "MD5",
    "MD5_EXTRA_KEY",
    "XXH128",
    "ContentDigest",
    "ContentHasher",
    "artifact_digest",
    "blob_key",
    "blob_key_or_none",
    "check_algorithm",
    "entry_digest",
    "is_md5_digest",
    "md5_b64",
    "xxh128_b64",
]

MD5 = "MD5"
XXH128 = "XXH128"
DIGEST_ALGORITHMS = (MD5, XXH128)
ALG_EXTRA_KEY = "alg"
"""W&B's entry key naming a digest's algorithm; absent means MD5."""
MD5_EXTRA_KEY = "md5"
"""artifactfs's entry key holding the base64 MD5 of an XXH128 entry's bytes: its blob's name."""

_MANIFEST_PREFIX = b"wandb-artifact-manifest-v1\n"


def check_algorithm(algorithm: object) -> str:
    """``algorithm`` if it is one of DIGEST_ALGORITHMS, else InvalidManifest saying which are."""
    if algorithm not in DIGEST_ALGORITHMS:
        raise InvalidManifest(
            f"digest algorithm {algorithm!r} is not one artifactfs knows; use MD5 or XXH128"
        )
    return str(algorithm)


def xxh128_b64(data: BytesLike) -> str:
    """XXH128 entry digest of ``data`` (big-endian bytes, as python-xxhash's ``digest()``):
    ``b"a"`` -> ``"qW+vcFrxaDTmxjK2HpZOHw=="``."""
    return base64.b64encode(xxhash.xxh128_digest(data)).decode("ascii")


def entry_digest(data: BytesLike, algorithm: str = MD5) -> str:
    """The entry digest of ``data`` in ``algorithm``."""
    return xxh128_b64(data) if algorithm == XXH128 else md5_b64(data)


def md5_b64(data: BytesLike) -> str:
    """Entry digest of ``data``: ``b"hello"`` -> ``"XUFAKrxLKna5cZ2REBfFkg=="``."""
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


def is_md5_digest(digest: object) -> bool:
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


def artifact_digest(entries: Iterable[tuple[str, str]], algorithm: str = MD5) -> str:
    """W&B's artifact digest over ``(path, digest)`` pairs: the hex hash of a sorted listing.

    The hash is the artifact's algorithm, not each entry's: an XXH128 artifact hashes its
    references' MD5 or ETag digests with XXH128 too, as W&B does.
    """
    h: Any = xxhash.xxh128(_MANIFEST_PREFIX) if algorithm == XXH128 else hashlib.md5(
        _MANIFEST_PREFIX)
    for path, digest in sorted(entries):
        h.update(f"{path}:{digest}\n".encode())
    return str(h.hexdigest())


class ContentDigest:
    """What one pass over a blob yields: entry digest (in the hasher's algorithm), the MD5
    that names the blob, size and, for large blobs, chunk index."""

    __slots__ = ("algorithm", "chunk_index", "digest", "md5", "size")

    def __init__(self, digest: str, size: int, chunk_index: ChunkIndex | None,
                 md5: str | None = None, algorithm: str = MD5) -> None:
        self.digest = digest
        self.size = size
        self.chunk_index = chunk_index
        self.md5 = md5 if md5 is not None else digest
        self.algorithm = algorithm

    @property
    def key(self) -> str:
        """Hex MD5: the blob's name in a registry and in the cache."""
        return blob_key(self.md5)

    def entry_extra(self) -> dict[str, Any]:
        """The ``extra`` of a new manifest entry for these bytes: the algorithm and the MD5
        of an XXH128 entry, and the chunk index's own hash for a large blob (decision 2)."""
        extra: dict[str, Any] = {}
        if self.algorithm == XXH128:
            extra[ALG_EXTRA_KEY] = XXH128
            extra[MD5_EXTRA_KEY] = self.md5
        if self.chunk_index is not None:
            extra[CHUNK_INDEX_EXTRA_KEY] = self.chunk_index.sha256()
        return extra


class ContentHasher:
    """Feeds bytes once, yields MD5 (and XXH128 when asked) and the per-chunk SHA-256 index
    together.

    The chunk index exists only for blobs larger than one chunk: smaller ones are fetched
    whole and checked by their digest alone (docs/architecture.md, "Verification").
    """

    def __init__(self, chunk_size: int = CHUNK_SIZE, algorithm: str = MD5) -> None:
        self._chunk_size = chunk_size
        self._algorithm = check_algorithm(algorithm)
        self._md5 = hashlib.md5()
        self._xxh = xxhash.xxh128() if algorithm == XXH128 else None
        self._chunk = hashlib.sha256()
        self._in_chunk = 0
        self._size = 0
        self._hashes: list[bytes] = []

    def update(self, data: BytesLike) -> None:
        self._md5.update(data)
        if self._xxh is not None:
            self._xxh.update(data)
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
        md5 = base64.b64encode(self._md5.digest()).decode("ascii")
        if self._xxh is None:
            return ContentDigest(md5, self._size, index)
        digest = base64.b64encode(self._xxh.digest()).decode("ascii")
        return ContentDigest(digest, self._size, index, md5, XXH128)
