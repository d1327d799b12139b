"""Verified bytes of references: entries whose bytes are at a URI, not in the registry.

Read by the client that asks (the SDK, a mount's daemon), never by a registry server, with
that client's own configuration for the scheme: its files for ``file://``, httpx (no netrc,
proxies and CA files from the environment) for ``http(s)://``, boto3's default chain
(``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``~/.aws`` ...) for ``s3://``.

**Verification.** A reference cannot be checked chunk by chunk from what the manifest holds:
an MD5 (``file://``, an HTTP object without an ETag) covers only the whole, an ETag or a
version id says which bytes the source should send, not what they are. So its first read
fetches it whole, pinned to the bytes logged (``If-Match`` with the ETag, the S3 version id)
and checked (size, the MD5 where the entry has one, the ETag the source answered with), before
any byte is served. The verified bytes go into the disk cache under a name of their own
(``core.references.reference_cache_name``: the URI, digest, ETag, version and size), cut in
chunks with a chunk index built from them for a large one, so later reads are by chunk, as
for a blob. A chunk the cache lost is read again by byte range from the source and checked
against that index. A source that changed is :class:`ReferenceChanged` naming the entry and
the URI, never other bytes; one that cannot be read is :class:`ReferenceUnavailable`.

A ``checksum=False`` reference has nothing to check against: its first fetch is what is
served (and cached, so a file read twice reads the same bytes), as W&B serves it.

Other schemes go through :data:`READERS`; ``wandb-artifact://`` references resolve to
another artifact's entry in the registry and are read as that entry (``VerifiedContent``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

from cachetools import LRUCache, TTLCache

from artifactfs.cache import ContentCache
from artifactfs.core.chunks import CHUNK_SIZE, ChunkIndex, chunk_count
from artifactfs.core.digests import ContentHasher, is_md5_digest, md5_b64
from artifactfs.core.errors import ReferenceChanged, ReferenceUnavailable
from artifactfs.core.manifest import ManifestEntry
from artifactfs.core.references import (
    ETAG_EXTRA_KEY,
    VERSION_ID_EXTRA_KEY,
    clean_uri,
    reference_cache_name,
    scheme_of,
)
from artifactfs.files import READ_BLOCK, atomic_writer

if TYPE_CHECKING:  # httpx and boto3 load when a reference of theirs is first read
    import httpx

__all__ = ["READERS", "ReferenceContent", "SourceReader", "file_ref_path", "http_client",
           "is_unchecked", "redact_httpx_log", "s3_client"]

log = logging.getLogger(__name__)

Piece = bytes | bytearray | memoryview


# ---- the sources ---------------------------------------------------------------------------


def file_ref_path(uri: str) -> str:
    """The local path a ``file://`` URI names: what follows ``file://``, as W&B takes it
    (``file:///data/x`` is ``/data/x``), or that percent-decoded when only the decoded
    path exists (``Path.as_uri()`` writes a space as ``%20``)."""
    parts = urlsplit(uri)
    path = parts.netloc + parts.path
    if "%" in path and not os.path.lexists(path):
        decoded = unquote(path)
        if os.path.lexists(decoded):
            return decoded
    return path


def is_unchecked(entry: ManifestEntry) -> bool:
    """True for a reference added with ``checksum=False``: its digest is the URI itself
    (http, s3, ...) or, for ``file://``, the MD5 of the file's URI text (W&B's forms), so
    nothing about its bytes can be checked."""
    ref = entry.ref
    if ref is None:
        return False
    if entry.digest == ref:
        return True
    if scheme_of(ref) == "file":
        path = file_ref_path(ref)
        texts = {ref, Path(path).resolve().as_uri()} if path.startswith("/") else {ref}
        return entry.digest in {md5_b64(t.encode()) for t in texts}
    return False


@dataclass(slots=True)
class Opened:
    """A source's answer to a whole read: its bytes in blocks, and the MD5 (base64) the
    bytes must have where the source or the entry says (None: the ETag or version the
    source answered with was all there was to check, and it matched)."""

    blocks: Iterator[bytes]
    expected_md5: str | None = None


class SourceReader(Protocol):
    """How one scheme's sources are read. Both methods raise ReferenceChanged when the
    source says its bytes are no longer those logged (another ETag, a failed If-Match, a
    missing version) and ReferenceUnavailable when it cannot be read."""

    def open_whole(self, entry: ManifestEntry) -> AbstractContextManager[Opened]: ...

    def read_range(self, entry: ManifestEntry, start: int, end: int) -> bytes: ...

    def close(self) -> None: ...


def _changed(entry: ManifestEntry, why: str) -> ReferenceChanged:
    # clean_uri again: a manifest imported from wandb keeps a URI as its user gave it
    return ReferenceChanged(
        f"reference {entry.path!r} ({clean_uri(entry.ref or '')}) changed since it was "
        f"logged: {why}; log it again to use its new contents"
    )


def _unavailable(entry: ManifestEntry, why: str) -> ReferenceUnavailable:
    return ReferenceUnavailable(
        f"reference {entry.path!r} ({clean_uri(entry.ref or '')}) cannot be read: {why}")


class FileReader:
    """``file://``: a file on this machine's own disk (the reading client's, never the
    server's). Its MD5 is the entry's digest."""

    def _path(self, entry: ManifestEntry) -> str:
        return file_ref_path(entry.ref or "")

    @contextmanager
    def open_whole(self, entry: ManifestEntry) -> Iterator[Opened]:
        try:
            f = open(self._path(entry), "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _unavailable(entry, exc.strerror or type(exc).__name__) from None
        with f:
            def blocks() -> Iterator[bytes]:
                while block := f.read(READ_BLOCK):
                    yield block

            yield Opened(blocks(), None if is_unchecked(entry) else entry.digest)

    def read_range(self, entry: ManifestEntry, start: int, end: int) -> bytes:
        try:
            fd = os.open(self._path(entry), os.O_RDONLY)
        except OSError as exc:
            raise _unavailable(entry, exc.strerror or type(exc).__name__) from None
        try:
            return os.pread(fd, end - start, start)
        finally:
            os.close(fd)

    def close(self) -> None:
        pass


def _strong(etag: str) -> bool:
    return bool(etag) and not etag.startswith("W/")


def redact_httpx_log() -> None:
    """Keep passwords and signed query strings out of httpx's and httpcore's own log lines
    (``HTTP Request: GET URL ...`` at INFO, shown by ``--verbose``; redirects' Location at
    DEBUG): a reference may be added from a presigned URL or one with ``user:password@``,
    and the URL is logged before it could be stripped. Once per process."""
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactUris) for f in logger.filters):
            logger.addFilter(_RedactUris())


_URL_LOGGERS = ("httpx", "httpcore.http11", "httpcore.http2", "httpcore.connection",
                "httpcore.proxy")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


class _RedactUris(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _URI.sub(lambda m: clean_uri(m.group(0)), message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class HttpReader:
    """``http(s)://``: one object by GET. With an ETag logged, the request carries
    ``If-Match`` (a strong ETag) and the answer's ETag must be the one logged (a server may
    ignore If-Match); without one, the entry's digest is the MD5 of the body. A
    ``Content-MD5`` header is checked too."""

    def __init__(self) -> None:
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                redact_httpx_log()
                # no credentials of any kind: a manifest names the host, and a key of the
                # user's must not go to whatever host a manifest names
                self._client = http_client()
            return self._client

    def _request(self, entry: ManifestEntry, headers: dict[str, str]) -> httpx.Response:
        import httpx

        etag = str(entry.extra.get(ETAG_EXTRA_KEY, ""))
        if _strong(etag):
            headers["If-Match"] = etag
        try:
            request = self._http().build_request("GET", entry.ref or "", headers=headers)
            rsp = self._http().send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _unavailable(entry, type(exc).__name__) from None
        if rsp.status_code == 412:
            rsp.close()
            raise _changed(entry, f"the server no longer has ETag {etag} (HTTP 412)")
        if rsp.status_code >= 400:
            rsp.close()
            raise _unavailable(entry, f"the server answered HTTP {rsp.status_code}")
        if etag and rsp.headers.get("etag") != etag:
            got = rsp.headers.get("etag")
            rsp.close()
            raise _changed(entry, f"ETag {got} where {etag} was logged")
        return rsp

    def _expected_md5(self, entry: ManifestEntry, rsp: httpx.Response) -> str | None:
        if is_unchecked(entry):
            return None
        if ETAG_EXTRA_KEY not in entry.extra and is_md5_digest(entry.digest):
            return entry.digest  # logged without an ETag: the MD5 of the body
        sent = rsp.headers.get("content-md5")
        return sent if sent and is_md5_digest(sent) else None

    @contextmanager
    def open_whole(self, entry: ManifestEntry) -> Iterator[Opened]:
        import httpx

        rsp = self._request(entry, {})
        try:
            def blocks() -> Iterator[bytes]:
                try:
                    yield from rsp.iter_bytes(READ_BLOCK)
                except httpx.HTTPError as exc:
                    raise _unavailable(entry, type(exc).__name__) from None

            yield Opened(blocks(), self._expected_md5(entry, rsp))
        finally:
            rsp.close()

    def read_range(self, entry: ManifestEntry, start: int, end: int) -> bytes:
        import httpx

        rsp = self._request(entry, {"Range": f"bytes={start}-{end - 1}"})
        try:
            body = rsp.read()
        except httpx.HTTPError as exc:
            raise _unavailable(entry, type(exc).__name__) from None
        finally:
            rsp.close()
        # a server that does not do ranges answers 200 with the whole body
        return body if rsp.status_code == 206 else body[start:end]

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def http_client() -> httpx.Client:
    """The httpx client references are read and added with: redirects followed, proxies
    and CA files from the environment, no credentials (httpx reads no netrc)."""
    import httpx

    # identity: the ETag, Content-Length and MD5 are those of the bytes as stored, not of a
    # compressed form httpx would decode on the way
    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0, read=60.0),
                        headers={"Accept-Encoding": "identity"})


def s3_client() -> Any:
    """A boto3 S3 client from the standard AWS configuration of this machine."""
    import boto3
    import botocore.config

    return boto3.session.Session().client("s3", config=botocore.config.Config(
        signature_version="s3v4", retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=10, read_timeout=60,
    ))


def parse_s3_ref(ref: str) -> tuple[str, str]:
    """``(bucket, key)`` of ``s3://BUCKET/KEY``."""
    rest = ref.partition("://")[2]
    bucket, _, key = rest.partition("/")
    return bucket, key.partition("?")[0]


class S3Reader:
    """``s3://``: the object's logged version where the bucket is versioned, else the
    object with ``IfMatch`` on the logged ETag; the answer's ETag must be the one logged."""

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = s3_client()
            return self._client

    def _get(self, entry: ManifestEntry, **kwargs: Any) -> dict[str, Any]:
        import botocore.exceptions

        bucket, key = parse_s3_ref(entry.ref or "")
        etag = str(entry.extra.get(ETAG_EXTRA_KEY, ""))
        version = entry.extra.get(VERSION_ID_EXTRA_KEY)
        if version:
            kwargs["VersionId"] = str(version)
        if etag and not is_unchecked(entry):
            kwargs["IfMatch"] = '"' + etag.strip('"') + '"'  # kept without quotes (wandb)
        try:
            answer: dict[str, Any] = self._s3().get_object(Bucket=bucket, Key=key, **kwargs)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412"):
                raise _changed(entry, f"the object no longer has ETag {etag}") from None
            if code in ("NoSuchVersion",) or (version and code in ("NoSuchKey", "404")):
                raise _changed(entry, f"version {version} is gone") from None
            raise _unavailable(entry, f"S3 answered {code or 'an error'}") from None
        except botocore.exceptions.BotoCoreError as exc:
            # no credentials, connection refused, a timeout: the message names no secret
            raise _unavailable(entry, type(exc).__name__) from None
        got = str(answer.get("ETag", ""))
        if etag and not is_unchecked(entry) and got.strip('"') != etag.strip('"'):
            answer["Body"].close()
            raise _changed(entry, f"ETag {got} where {etag} was logged")
        return answer

    @contextmanager
    def open_whole(self, entry: ManifestEntry) -> Iterator[Opened]:
        import botocore.exceptions

        body = self._get(entry)["Body"]
        try:
            def blocks() -> Iterator[bytes]:
                try:
                    yield from body.iter_chunks(READ_BLOCK)
                except (botocore.exceptions.BotoCoreError, OSError) as exc:
                    raise _unavailable(entry, type(exc).__name__) from None

            yield Opened(blocks(), None)
        finally:
            body.close()

    def read_range(self, entry: ManifestEntry, start: int, end: int) -> bytes:
        body = self._get(entry, Range=f"bytes={start}-{end - 1}")["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def close(self) -> None:
        pass


READERS: dict[str, Callable[[], SourceReader]] = {
    "file": FileReader,
    "http": HttpReader,
    "https": HttpReader,
    "s3": S3Reader,
}
"""How each scheme's references are read, made on first use. ``wandb-artifact://`` is not
here: its target is an entry of the registry, read by ``VerifiedContent`` itself."""


# ---- verified, cached ----------------------------------------------------------------------


@dataclass(slots=True)
class _Fetched:
    """What a whole fetch produced: the bytes of a small reference, or the index of a large
    one and the chunks its caller asked for."""

    data: bytes = b""
    index: ChunkIndex | None = None
    kept: dict[int, bytes] = field(default_factory=dict)


class ReferenceContent:
    """Verified, cached bytes of reference entries (see the module's docstring).

    Thread-safe: the mount calls it from worker threads. A whole fetch of one reference runs
    once however many readers ask meanwhile (a mount's reads of other chunks of a large
    file, arriving while its first read fetches it, wait for that fetch)."""

    def __init__(self, cache: ContentCache, on_fetch: Callable[[int], None]) -> None:
        self.cache = cache
        self._on_fetch = on_fetch
        self._lock = threading.Lock()
        self._readers: dict[str, SourceReader] = {}
        self._indexes: LRUCache[str, ChunkIndex] = LRUCache(maxsize=4096)
        self._flights: dict[str, Future[_Fetched]] = {}
        self._failed: TTLCache[str, Exception] | None = None
        # schemes this client will not read, and why (a mount shared with other users
        # refuses file://: fs/daemon.py)
        self.refused: dict[str, str] = {}

    def keep_failures(self, seconds: float) -> None:
        """For ``seconds``, a reference whose whole fetch just failed (changed, or not
        readable) answers with that error instead of being fetched again: a mount's kernel
        asks again at once for a read that failed, and a changed 1 GiB source was fetched
        twice per read. Not for the SDK, whose caller may have just fixed the source."""
        with self._lock:
            self._failed = TTLCache(maxsize=1024, ttl=seconds)

    def close(self) -> None:
        with self._lock:
            readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.close()

    def _reader(self, entry: ManifestEntry) -> SourceReader:
        scheme = scheme_of(entry.ref or "")
        if scheme in self.refused:
            raise _unavailable(entry, self.refused[scheme])
        with self._lock:
            reader = self._readers.get(scheme)
            if reader is None:
                make = READERS.get(scheme)
                if make is None:
                    raise _unavailable(entry, f"references of scheme {scheme}:// are not "
                                       f"read by artifactfs (it reads {', '.join(READERS)})")
                reader = self._readers[scheme] = make()
            return reader

    @staticmethod
    def is_chunked(entry: ManifestEntry) -> bool:
        return entry.size > CHUNK_SIZE

    def contains(self, entry: ManifestEntry) -> bool:
        name = reference_cache_name(entry)
        return self.cache.contains(name + (".idx" if self.is_chunked(entry) else ""))

    # ---- small ------------------------------------------------------------------------------

    def whole(self, entry: ManifestEntry) -> bytes:
        """All bytes of a reference no larger than one chunk, verified."""
        name = reference_cache_name(entry)
        cached = self.cache.get(name)
        if cached is not None:
            if len(cached) == entry.size:
                return cached
            self.cache.discard(name)
        return self._once(entry, name, lambda: self._fetch(entry, name, None)).data

    # ---- large ------------------------------------------------------------------------------

    def index(self, entry: ManifestEntry) -> ChunkIndex:
        """The chunk index this client built when it fetched and checked the reference
        whole (fetching it now if it has none)."""
        return self._index(entry, None)[0]

    def _index(self, entry: ManifestEntry, want: tuple[int, int] | None
               ) -> tuple[ChunkIndex, dict[int, bytes]]:
        name = reference_cache_name(entry)
        with self._lock:
            found = self._indexes.get(name)
        if found is not None:
            return found, {}
        raw = self.cache.get(name + ".idx")
        if raw is not None:
            try:
                index = ChunkIndex.from_bytes(raw)
            except ValueError:
                index = None
            if index is not None and index.size == entry.size and index.chunk_size == CHUNK_SIZE:
                with self._lock:
                    self._indexes[name] = index
                return index, {}
            self.cache.discard(name + ".idx")
        fetched = self._once(entry, name, lambda: self._fetch(entry, name, want))
        assert fetched.index is not None
        return fetched.index, fetched.kept

    def chunks(self, entry: ManifestEntry, first: int, stop: int) -> list[Piece]:
        """Chunks ``[first, stop)`` of a large reference: from the disk cache, else by range
        from the source, each checked against the chunk index (a SHA-256 of each chunk read
        from the cache too: see below)."""
        index, kept = self._index(entry, (first, stop))
        if kept and all(n in kept for n in range(first, stop)):
            return [kept[n] for n in range(first, stop)]
        name = reference_cache_name(entry)
        names = [f"{name}.c{n}" for n in range(first, stop)]
        out: list[Piece] = []
        for n, cached in zip(range(first, stop), self.cache.get_many(names), strict=True):
            start, end = index.bounds(n)
            # checked here, unlike a blob's cached chunks: a fetch puts chunks as they stream
            # in, before the whole is checked (another process's fetch of a source that has
            # changed may be writing them right now), and only the index vouches for them
            if cached is not None and index.check(n, cached):
                out.append(cached)
                continue
            if cached is not None:
                self.cache.discard(names[n - first])
            data = self._reader(entry).read_range(entry, start, end)
            self._on_fetch(len(data))
            if not index.check(n, data):
                raise _changed(entry, f"bytes {start}-{end - 1} differ from those read when "
                               "it was first fetched")
            self.cache.put(f"{name}.c{n}", data)
            out.append(data)
        return out

    # ---- the whole fetch --------------------------------------------------------------------

    def _once(self, entry: ManifestEntry, name: str, fetch: Callable[[], _Fetched]) -> _Fetched:
        """``fetch()`` run by the first caller for ``name``; the others wait for it. A
        waiter gets the index (a large reference's chunks it then reads from the cache) or
        the bytes, or the error."""
        with self._lock:
            failed = self._failed.get(name) if self._failed is not None else None
            if failed is not None:
                raise type(failed)(*failed.args)
            pending = self._flights.get(name)
            leader = pending is None
            if pending is None:
                pending = self._flights[name] = Future()
        if not leader:
            done = pending.result()
            return _Fetched(done.data, done.index)
        try:
            result = fetch()
        except BaseException as exc:
            pending.set_exception(exc)
            if self._failed is not None and isinstance(exc, (ReferenceChanged,
                                                             ReferenceUnavailable)):
                with self._lock:
                    self._failed[name] = exc
            raise
        else:
            pending.set_result(result)
            return result
        finally:
            with self._lock:
                if self._flights.get(name) is pending:
                    del self._flights[name]

    def _fetch(self, entry: ManifestEntry, name: str, want: tuple[int, int] | None
               ) -> _Fetched:
        """Read the source whole, check it, and cache it: whole when small, in chunks with
        an index when large (the index last, once every byte passed: chunks without one are
        never read)."""
        large = self.is_chunked(entry)
        count = chunk_count(entry.size)
        if large:  # chunks a failed or interrupted fetch may have left: never under a new index
            for n in range(count):
                self.cache.discard(f"{name}.c{n}")
        hasher = ContentHasher()
        result = _Fetched()
        small: list[bytes] = []
        pending = bytearray()
        n = 0
        size = 0

        def chunk_done(data: bytes) -> None:
            nonlocal n
            self.cache.put(f"{name}.c{n}", data)
            if want is not None and want[0] <= n < want[1]:
                result.kept[n] = data
            n += 1

        try:
            with self._reader(entry).open_whole(entry) as opened:
                for block in opened.blocks:
                    size += len(block)
                    if size > entry.size:
                        raise _changed(entry, f"it holds more than the {entry.size} bytes logged")
                    hasher.update(block)
                    if not large:
                        small.append(block)
                        continue
                    pending += block
                    while len(pending) >= CHUNK_SIZE:
                        chunk_done(bytes(pending[:CHUNK_SIZE]))
                        del pending[:CHUNK_SIZE]
                self._on_fetch(size)
                if size != entry.size:
                    raise _changed(entry, f"{size} bytes where {entry.size} were logged")
                digest = hasher.result()
                if opened.expected_md5 is not None and digest.digest != opened.expected_md5:
                    raise _changed(entry, f"MD5 {digest.digest} where {opened.expected_md5} "
                                   "was logged")
            if not large:
                result.data = b"".join(small)
                self.cache.put(name, result.data)
                return result
            if pending:
                chunk_done(bytes(pending))
            index = digest.chunk_index
            assert index is not None and index.count == count
            self.cache.put(name + ".idx", index.to_bytes())
            with self._lock:
                self._indexes[name] = index
            result.index = index
            return result
        except BaseException:
            if large:
                for k in range(count):
                    self.cache.discard(f"{name}.c{k}")
            raise

    # ---- downloads and checks ---------------------------------------------------------------

    def download(self, entry: ManifestEntry, dest: Path,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        """Write the reference's verified bytes to ``dest`` atomically."""
        if entry.size == 0 and is_unchecked(entry):
            # a checksum=False reference logged without a size (W&B records none for
            # http(s) and s3): whatever the source holds, as W&B downloads it
            with atomic_writer(dest) as out, self._reader(entry).open_whole(entry) as opened:
                for block in opened.blocks:
                    out.write(block)
                    if on_bytes:
                        on_bytes(len(block))
            return
        with atomic_writer(dest) as out:
            if not self.is_chunked(entry):
                data = self.whole(entry)
                out.write(data)
                if on_bytes:
                    on_bytes(len(data))
                return
            count = self.index(entry).count
            for first in range(0, count, 8):
                for piece in self.chunks(entry, first, min(count, first + 8)):
                    out.write(piece)
                    if on_bytes:
                        on_bytes(len(piece))

    def check_source(self, entry: ManifestEntry) -> bool:
        """Read the source again, whole, past the cache, and check it against the entry:
        ``artifactfs verify --references``. False for a ``checksum=False`` reference, which
        holds nothing to check; raises ReferenceChanged or ReferenceUnavailable."""
        if is_unchecked(entry):
            with self._reader(entry).open_whole(entry):
                return False  # reachable, and nothing more to say
        size = 0
        md5 = hashlib.md5()
        with self._reader(entry).open_whole(entry) as opened:
            for block in opened.blocks:
                size += len(block)
                md5.update(block)
            expected = opened.expected_md5
        if size != entry.size:
            raise _changed(entry, f"{size} bytes where {entry.size} were logged")
        got = base64.b64encode(md5.digest()).decode()
        if expected is not None and got != expected:
            raise _changed(entry, f"MD5 {got} where {expected} was logged")
        return True
