"""The registry interface over HTTP (``ARTIFACTFS_REGISTRY`` set): the server's client.

Two pooled ``httpx.Client`` per registry object, thread-safe, with timeouts on every request:
the default transport for the API, and ``StdlibTransport`` for bulk reads (blob bytes, chunk
indexes, manifests), where the transport's CPU per byte is what limits a mount.
Idempotent requests (GET, HEAD, PUT, DELETE and the read-only POST of ``blobs/missing``) are
retried with exponential backoff and jitter on connection errors and 5xx answers, never
sooner than a 503's ``Retry-After`` asks (a registry whose database is restarting says when
to come back); a commit (POST) is not, since it might have succeeded, unless it carries a
commit key. Blob uploads go straight to storage where the
registry hands out presigned addresses (a bucket; the registry checks the bytes before the
blob counts), else stream from disk through the registry. Blob reads may be redirected to
storage or another server; the API key is not sent there (httpx drops ``Authorization`` when
a redirect leaves the origin, and uploads to storage go by a client without it), presigned
queries are kept out of the log, and callers verify every byte anyway.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpcore
import httpx
from cachetools import TTLCache
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random,
)

from artifactfs.core.chunks import ChunkIndex
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.errors import (
    ArtifactFSError,
    DigestMismatch,
    NotFound,
    RegistryFault,
    RegistryUnavailable,
)
from artifactfs.core.folders import (
    FOLDER_BATCH_MAX,
    FolderListing,
    check_folder_path,
    parse_folders,
)
from artifactfs.core.manifest import Manifest
from artifactfs.core.records import CollectionInfo, CommittedVersion, VersionInfo
from artifactfs.core.runs import RunInfo, new_run_id
from artifactfs.core.wire import (
    API_PREFIX,
    BATCH_MAX_BLOBS,
    error_from_response,
    split_batch,
)
from artifactfs.registry.base import Registry
from artifactfs.registry.transport import KEEPALIVE_EXPIRY, StdlibTransport

__all__ = ["INLINE_MANIFEST_MAX", "HttpRegistry"]

log = logging.getLogger(__name__)

_UPLOAD_BLOCK = 1 << 20
_UPLOAD_PARALLEL = 4  # parts of one multipart upload sent at once
INLINE_MANIFEST_MAX = 16 << 20
"""Largest manifest JSON sent inside a commit's body (some 170,000 entries); a larger one is
uploaded as a blob and named by the commit, well below the 64 MiB a registry takes as JSON
by default (server/app.py), so that a registry given less still takes most commits inline."""
# a commit's answer waits for the registry to check and store every entry: 30 s of grace
# plus this much per entry (50 s per million; 1.28 million took 40 s on this machine kind,
# upload included, with two other processes busy)
_COMMIT_SECONDS_PER_ENTRY = 5e-5
_REDIRECT_TTL = 300.0
# the longest Retry-After taken as it is: a registry asking for more is asked again then (a
# client's deadline, 60 s by default, still ends the retries)
_MAX_RETRY_AFTER = 30.0
_FOLDER_QUERY_BYTES = 8 << 10
_T = TypeVar("_T")

# httpcore reads a response 64 KiB at a time, and every read costs a pass through h11 and
# the GIL; blob bodies are megabytes, so read up to 1 MiB per call. A class attribute of
# httpcore's public HTTP/1.1 connection, so this sets it for the process; recv() still
# returns what is there, so small answers are unaffected.
httpcore.HTTP11Connection.READ_NUM_BYTES = 1 << 20


# the query of a presigned URL (AWS signature version 4's X-Amz-Signature, version 2's
# Signature) lets anyone holding it read or write: never written to a log
_SECRET_QUERY = re.compile(r"\?[^\s\"'<>]*(?:X-Amz-Signature|Signature)=[^\s\"'<>]*",
                           re.IGNORECASE)


def redacted(text: str) -> str:
    """``text`` with the query of any presigned URL in it left out."""
    return _SECRET_QUERY.sub("?(signed query not shown)", text)


class _RedactSignatures(logging.Filter):
    """Leaves presigned queries out of httpx's log lines ("HTTP Request: GET URL"), which
    name every URL followed, a redirect to storage included, and httpcore's."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _SECRET_QUERY.search(message):
            record.msg, record.args = redacted(message), None
        return True


# the loggers that name URLs: httpx's request lines, httpcore's traces (DEBUG) of the
# response headers, a redirect's Location among them; a logger's filter applies only to its
# own records, so each is named
_URL_LOGGERS = ("httpx", "httpcore.http11", "httpcore.http2", "httpcore.connection",
                "httpcore.proxy")


def _redact_httpx_log() -> None:
    """Once per process: the filter on httpx's and httpcore's loggers (added when a client is
    made, not at import)."""
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactSignatures) for f in logger.filters):
            logger.addFilter(_RedactSignatures())


class _Retryable(Exception):
    """A 5xx answer or a connection failure: worth trying again.

    ``answered``: the registry answered (a fault of its own with this request), as opposed
    to not being reached, or saying it cannot serve now (503). ``retry_after``: the seconds
    a 503's ``Retry-After`` asked to wait, if it did.
    """

    def __init__(self, message: str, *, answered: bool = False, unavailable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.answered = answered
        self.unavailable = unavailable
        self.retry_after = retry_after

    @classmethod
    def of(cls, response: httpx.Response, message: str) -> _Retryable:
        """The failure a 5xx ``response`` is."""
        if response.status_code == 503:
            return cls(message, unavailable=True, retry_after=_retry_after(response))
        return cls(message, answered=True)

    def error(self, message: str) -> RegistryUnavailable:
        return (RegistryFault if self.answered else RegistryUnavailable)(message)


def _retry_after(response: httpx.Response) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait (a number or an HTTP date), at
    most ``_MAX_RETRY_AFTER``; None without one, or with one that means nothing."""
    value = (response.headers.get("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


_backoff = wait_exponential(multiplier=0.2, max=2.0) + wait_random(0, 0.2)


def _wait(state: RetryCallState) -> float:
    """The pause before the next attempt: exponential backoff with jitter, and never less
    than a 503's Retry-After (with jitter on top, so that the clients a restart turned away
    together do not all come back in the same instant)."""
    pause = float(_backoff(state))
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, _Retryable) and exc.retry_after is not None:
        pause = max(pause, exc.retry_after + random.uniform(0.0, 0.2))
    return pause


def _q(part: str) -> str:
    return quote(part, safe="")


class HttpRegistry(Registry):
    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout: float = 30.0,
        read_timeout: float | None = None,
        attempts: int = 4,
        max_connections: int = 32,
        inline_manifest_max: int = INLINE_MANIFEST_MAX,
    ) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        _redact_httpx_log()
        # a read (GET, HEAD, bulk) gives up after read_timeout, retries included: a mount
        # passes its --read-timeout, after which it has failed the read anyway, so that the
        # worker thread waiting here is freed then instead of up to twice 30 s later
        read_limit = read_timeout if read_timeout is not None else timeout
        self._read_timeouts = httpx.Timeout(read_limit, connect=min(read_limit, 10.0))
        self._read_deadline = read_limit if read_timeout is not None else timeout * 2
        self._inline_manifest_max = inline_manifest_max
        self.description = f"registry {self.url}"
        headers = {"User-Agent": "artifactfs"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        common: dict[str, Any] = {
            "base_url": self.url + API_PREFIX,
            "headers": headers,
            "timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            "follow_redirects": True,
        }
        self._client = httpx.Client(
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections,
                                keepalive_expiry=KEEPALIVE_EXPIRY),
            **common,
        )
        # bulk reads (blob bytes, chunk indexes, manifests) go over the standard library's
        # http.client, which costs a fifth of the CPU per byte (see registry/transport.py)
        self._reads = httpx.Client(transport=StdlibTransport(max_idle=max_connections),
                                   **common)
        # uploads straight to storage: no API key, no base URL, no redirects
        self._storage = httpx.Client(headers={"User-Agent": "artifactfs"},
                                     timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))
        self._direct_uploads: bool | None = None  # False once the registry said "server"
        self._attempts = attempts
        self._deadline = timeout * 2
        # blob key -> where the registry last redirected its reads (a static server, a
        # presigned URL); kept briefly so presigned URLs are not used after they expire
        self._redirects: TTLCache[str, str] = _LockedTTLCache(maxsize=4096, ttl=_REDIRECT_TTL)

    def close(self) -> None:
        self._client.close()
        self._reads.close()
        self._storage.close()

    # ---- plumbing ---------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, *, retry: bool = True, bulk: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One request, retried unless ``retry`` is false; ``bulk`` reads take the
        lighter client (idempotent reads whose answers are large)."""
        client = self._reads if bulk else self._client
        read = bulk or method in ("GET", "HEAD")
        if read:
            kwargs.setdefault("timeout", self._read_timeouts)

        def once() -> httpx.Response:
            try:
                response = client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            if response.status_code >= 500:
                raise _Retryable.of(response, f"HTTP {response.status_code} from {method} "
                                              f"{path}{_said(response)}")
            return response

        if not retry:
            try:
                return once()
            except _Retryable as exc:
                raise exc.error(f"{self.url}: {exc}") from None
        return self._retrying(once, self._read_deadline if read else self._deadline)

    def _retrying(self, once: Callable[[], _T], deadline: float) -> _T:
        """Run ``once`` again on _Retryable failures, with backoff (``_wait``), for at most
        ``self._attempts`` attempts and ``deadline`` seconds: no attempt is made after a
        pause that would end past it."""
        retrying = Retrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            stop=stop_after_attempt(self._attempts) | stop_before_delay(deadline),
            wait=_wait,
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            return retrying(once)
        except _Retryable as exc:
            said = ("failed to answer" if exc.answered
                    else "is unavailable" if exc.unavailable else "could not be reached")
            raise exc.error(f"{self.url} {said} after retries: {exc}") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        self._raise_for(response)
        return response.json() if response.content else None

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.json()
        except ValueError:
            body = None
        raise error_from_response(response.status_code, body)

    def _collection(self, entity: str, project: str, name: str) -> str:
        return f"/entities/{_q(entity)}/projects/{_q(project)}/collections/{_q(name)}"

    # ---- listing ----------------------------------------------------------------------------

    def key_entity(self) -> str | None:
        try:
            found = self._json("GET", "/whoami")
        except NotFound:  # a server from before the route
            return None
        entity = found.get("entity") if isinstance(found, dict) else None
        return entity if isinstance(entity, str) and entity else None

    def list_projects(self, entity: str) -> list[str]:
        return list(self._json("GET", f"/entities/{_q(entity)}/projects"))

    def list_types(self, entity: str, project: str) -> list[str]:
        return list(self._json("GET", f"/entities/{_q(entity)}/projects/{_q(project)}/types"))

    def list_collections(
        self, entity: str, project: str, type_: str | None = None
    ) -> list[CollectionInfo]:
        params = {"type": type_} if type_ else None
        raw = self._json(
            "GET", f"/entities/{_q(entity)}/projects/{_q(project)}/collections", params=params
        )
        return [CollectionInfo.from_dict(c) for c in raw]

    def list_versions(self, entity: str, project: str, name: str) -> list[VersionInfo]:
        raw = self._json("GET", self._collection(entity, project, name) + "/versions")
        return [VersionInfo.from_dict(v) for v in raw]

    def collection_type(self, entity: str, project: str, name: str) -> str | None:
        response = self._send("GET", self._collection(entity, project, name))
        if response.status_code == 404:
            return None
        self._raise_for(response)
        return str(response.json()["type"])

    # ---- versions ---------------------------------------------------------------------------

    def resolve(self, entity: str, project: str, name: str, alias: str) -> VersionInfo:
        path = self._collection(entity, project, name) + f"/resolve/{_q(alias)}"
        return VersionInfo.from_dict(self._json("GET", path))

    def version(self, version_id: str) -> VersionInfo:
        return VersionInfo.from_dict(self._json("GET", f"/versions/{_q(version_id)}"))

    def manifest(self, version_id: str) -> Manifest:
        response = self._send("GET", f"/versions/{_q(version_id)}/manifest", bulk=True)
        self._raise_for(response)
        return Manifest.from_json(response.content)

    def folder_listings(self, version_id: str, paths: Sequence[str]) -> list[FolderListing]:
        wanted = [check_folder_path(p) for p in paths]
        out: list[FolderListing] = []
        while len(out) < len(wanted):
            # as many as one request may name, and as fit in a URL (a server takes a
            # request line of 16 KiB or so; percent-encoding may triple a path)
            part: list[str] = []
            query = 0
            for path in wanted[len(out) : len(out) + FOLDER_BATCH_MAX]:
                size = len(quote(path, safe="")) + 6
                if part and query + size > _FOLDER_QUERY_BYTES:
                    break
                part.append(path)
                query += size
            response = self._send("GET", f"/versions/{_q(version_id)}/folders", bulk=True,
                                  params=[("path", p) for p in part])
            self._raise_for(response)
            # the registry may answer with fewer than asked (a byte budget): ask on
            out.extend(parse_folders(response.content, part))
        return out

    def commit(
        self,
        *,
        entity: str,
        project: str,
        name: str,
        type_: str,
        manifest: Manifest,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        commit_key: str | None = None,
        tags: Sequence[str] = (),
    ) -> CommittedVersion:
        fields: dict[str, Any] = {
            "type": type_, "description": description, "metadata": metadata or {},
            "aliases": list(aliases),
        }
        if commit_key is not None:
            fields["commit_key"] = commit_key
        if tags:
            fields["tags"] = list(tags)
        # the registry's own text of the manifest (ASCII: json escapes the rest), made in
        # slices so that a mount committing from a worker thread keeps its event loop going
        text = manifest.to_json().encode("ascii")
        if len(text) <= self._inline_manifest_max:
            head = json.dumps(fields, separators=(",", ":"))
            body = b"".join((head[:-1].encode(), b',"manifest":', text, b"}"))
        else:
            fields["manifest_blob"] = self._upload_manifest(text)
            body = json.dumps(fields, separators=(",", ":")).encode()
        del text
        path = self._collection(entity, project, name) + "/versions"
        # only a keyed commit may be sent again: the registry then answers with the version
        # the first attempt made, where an unkeyed retry could make a second one
        response = self._send(
            "POST", path, content=body, headers={"Content-Type": "application/json"},
            retry=commit_key is not None, timeout=self._commit_timeout(len(body), len(manifest)),
        )
        self._raise_for(response)
        # 201: a new version; 200: a version that held this content already
        raw = response.json()
        self._check_tags_kept(tags, raw)
        return CommittedVersion.of(VersionInfo.from_dict(raw),
                                   unchanged=response.status_code == 200)

    def _check_tags_kept(self, sent: Sequence[str] | None, raw: dict[str, Any]) -> None:
        """A server older than tags ignores them; its answer, which a current server always
        gives them in when there are any, says so. Refused loudly rather than lost."""
        if sent and "tags" not in raw:
            shown = f"{raw.get('project')}/{raw.get('name')}:v{raw.get('index')}"
            raise ArtifactFSError(
                f"the registry at {self.url} keeps no tags (a server older than this "
                f"client): {shown} was saved without them; upgrade the server, then set "
                "them again")

    def _upload_manifest(self, text: bytes) -> str:
        """Upload a manifest's JSON as a blob (unless the registry has it for us already)
        and return its digest, for a commit that names it instead of carrying it: a body of
        120 MB (ImageNet's 1.28 million files) is past what a registry takes as JSON. The
        upload is an idempotent PUT, retried like any blob's; the blob, checked against its
        MD5 on arrival, is reachable by this entity alone."""
        digest = md5_b64(text)
        if self.missing_blobs([digest]):
            # like any blob: straight to storage when the registry hands out addresses (a
            # bucket), where the registry reads it back to check and parse it; 120 MB through
            # the registry would cost it the CPU and bandwidth presigned uploads save
            self._upload(digest, len(text), lambda start, end: text[start:end],
                         lambda: text, None)
        return digest

    def _commit_timeout(self, body_bytes: int, entries: int) -> httpx.Timeout:
        """The read timeout of a commit grows with its manifest: the registry checks and
        writes every entry before it answers, some 20 s per million entries on this
        machine kind, and a commit given up on would be sent again."""
        read = self._timeout + entries * _COMMIT_SECONDS_PER_ENTRY
        return httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0), read=read)

    def version_by_commit_key(self, entity: str, commit_key: str) -> VersionInfo | None:
        response = self._send("GET", f"/entities/{_q(entity)}/commits/{_q(commit_key)}")
        if response.status_code == 404:
            return None
        self._raise_for(response)
        return VersionInfo.from_dict(response.json())

    def add_alias(self, version_id: str, alias: str) -> VersionInfo:
        path = f"/versions/{_q(version_id)}/aliases/{_q(alias)}"
        return VersionInfo.from_dict(self._json("PUT", path))

    def remove_alias(self, version_id: str, alias: str) -> VersionInfo:
        path = f"/versions/{_q(version_id)}/aliases/{_q(alias)}"
        return VersionInfo.from_dict(self._json("DELETE", path))

    def update_version(
        self,
        version_id: str,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> VersionInfo:
        body = {"description": description, "metadata": metadata,
                "tags": None if tags is None else list(tags)}
        raw = self._json("PATCH", f"/versions/{_q(version_id)}", json=body)
        self._check_tags_kept(tags, raw)
        return VersionInfo.from_dict(raw)

    def delete_version(self, version_id: str, *, delete_aliases: bool = False) -> None:
        params = {"delete_aliases": "true"} if delete_aliases else None
        self._json("DELETE", f"/versions/{_q(version_id)}", params=params)

    # ---- blobs ------------------------------------------------------------------------------

    def missing_blobs(self, digests: Iterable[str]) -> set[str]:
        wanted = sorted(set(digests))
        if not wanted:
            return set()
        return set(self._json("POST", "/blobs/missing", json={"digests": wanted})["missing"])

    def upload_blob(
        self, path: Path, digest: str, on_bytes: Callable[[int], None] | None = None
    ) -> None:
        """Upload a file as blob ``digest``: straight to storage when the registry hands out
        upload addresses (a bucket), else through the registry (a PUT of the bytes). Raises
        DigestMismatch when the bytes are not the digest's (storage or the registry found
        other bytes; nothing stored)."""
        def read_range(start: int, end: int) -> bytes:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(end - start)

        self._upload(digest, path.stat().st_size, read_range,
                     lambda: _FileBody(path, on_bytes), on_bytes)

    def _upload(self, digest: str, size: int, read_range: Callable[[int, int], bytes],
                body: Callable[[], bytes | _FileBody],
                on_bytes: Callable[[int], None] | None) -> None:
        """``upload_blob`` of bytes from anywhere: ``read_range(start, end)`` gives a part
        of them for storage, ``body()`` all of them for a PUT through the registry."""
        key = blob_key(digest)
        if self._direct_uploads is not False:
            try:
                plan = self._json("POST", f"/blobs/{key}/uploads", json={"size": size})
            except NotFound:  # a registry older than presigned uploads
                plan = {"method": "server"}
            if plan.get("stored") is False:  # this entity reaches that blob already
                if on_bytes:
                    on_bytes(size)  # as a PUT the registry drained would have counted
                return
            if plan.get("method") == "direct":
                self._upload_direct(read_range, digest, size, plan, on_bytes)
                return
            # the registry stores blobs itself: ask no more
            self._direct_uploads = False
        self._json(
            "PUT", f"/blobs/{key}", content=body(),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )

    def _upload_direct(self, read_range: Callable[[int, int], bytes], digest: str, size: int,
                       plan: dict[str, Any], on_bytes: Callable[[int], None] | None) -> None:
        """Every part of an upload plan PUT to storage (without the API key: the plan's
        addresses carry their own signatures), then the registry told, which checks the bytes
        before the blob counts. Parts go four at a time."""
        parts = plan.get("parts")
        upload_id = plan.get("upload_id")
        if not isinstance(parts, list) or not parts or not isinstance(upload_id, str):
            raise RegistryFault(f"{self.url}: bad upload plan for blob {digest}")

        def put(part: dict[str, Any]) -> None:
            body = read_range(int(part["start"]), int(part["end"]))
            self._retrying(lambda: self._put_part(str(part["url"]), body,
                                                  dict(part.get("headers") or {}), digest),
                           self._deadline)
            if on_bytes:
                on_bytes(len(body))

        if len(parts) == 1:
            put(parts[0])
        else:
            with ThreadPoolExecutor(max_workers=_UPLOAD_PARALLEL) as pool:
                for done in [pool.submit(put, p) for p in parts]:
                    done.result()
        # the registry reads a large upload back to check it: 30 s and 20 s per GiB
        timeout = httpx.Timeout(self._timeout, connect=min(self._timeout, 10.0),
                                read=self._timeout + size / (50 << 20))
        try:
            self._json("POST", f"/blobs/{blob_key(digest)}/uploaded",
                       json={"upload_id": upload_id}, timeout=timeout)
        except NotFound:
            # a retry after a lost answer finds the upload gone: done if the blob is ours now
            if self.missing_blobs([digest]):
                raise

    def _put_part(self, url: str, body: bytes, headers: dict[str, str], digest: str) -> None:
        try:
            response = self._storage.put(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise _Retryable(f"blob storage: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise _Retryable(f"blob storage answered HTTP {response.status_code}")
        if response.status_code == 400 and b"BadDigest" in response.content:
            raise DigestMismatch(f"blob storage refused the bytes of blob {digest}: they do "
                                 "not have that digest (did the file change?)")
        if response.status_code >= 400:
            raise RegistryFault(f"blob storage refused an upload of blob {digest} "
                                f"(HTTP {response.status_code})")

    def read_blob(self, digest: str, start: int, end: int) -> bytes | bytearray:
        if end <= start:
            return b""
        key = blob_key(digest)
        headers = {"Range": f"bytes={start}-{end - 1}"}
        target = self._redirects.get(key)
        if target is not None:
            # the registry sent reads of this blob elsewhere not long ago: go there directly
            # and save a round trip per request; any trouble and we ask the registry again
            try:
                response, body = self._read_body(target, headers, start, end, direct=True)
                if response.status_code in (200, 206):
                    return body
                log.info("remembered location of blob %s answered HTTP %d (expired?); "
                         "asking the registry", digest, response.status_code)
            except (_Retryable, httpx.HTTPError) as exc:
                log.info("remembered location of blob %s failed (%s); asking the registry",
                         digest, redacted(str(exc)))
            self._redirects.pop(key, None)
        for attempt in (1, 2):
            response, body = self._retrying(
                lambda: self._read_body(f"/blobs/{key}", headers, start, end, direct=False),
                self._read_deadline,
            )
            if response.status_code in (200, 206):
                if response.history:
                    self._redirects[key] = str(response.url)
                return body
            # storage refused the address the registry just handed out (expired on the way,
            # a clock that runs ahead): a fresh one, once
            log.info("blob storage refused a fresh address for blob %s (HTTP %d)%s", digest,
                     response.status_code, "; asking the registry again" if attempt == 1
                     else "")
        raise RegistryFault(f"{self.url}: blob storage refused the addresses the registry "
                            f"gave for blob {digest} (HTTP {response.status_code})")

    def _read_body(
        self, url: str, headers: dict[str, str], start: int, end: int, *, direct: bool
    ) -> tuple[httpx.Response, bytes | bytearray]:
        """One ranged GET, its body read into a single preallocated buffer."""
        request = self._reads.build_request("GET", url, headers=headers,
                                            timeout=self._read_timeouts)
        if direct:  # another origin: the key stays with the registry
            request.headers.pop("Authorization", None)
        try:
            response = self._reads.send(request, stream=True, follow_redirects=not direct)
            try:
                if response.status_code >= 500:
                    raise _Retryable.of(response, f"HTTP {response.status_code} from GET "
                                                  f"{redacted(url)}")
                if response.status_code >= 400:
                    response.read()
                    if direct or (response.history and response.status_code == 403):
                        return response, b""  # storage's refusal: the caller asks again
                    self._raise_for(response)
                if response.status_code == 200:  # a server that ignored Range sent everything
                    return response, response.read()[start:end]
                return response, _read_exact(response, end - start)
            finally:
                response.close()
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc

    def read_blobs(self, digests: Sequence[str]) -> list[bytes | memoryview | None]:
        out: list[bytes | memoryview | None] = []
        for start in range(0, len(digests), BATCH_MAX_BLOBS):
            part = list(digests[start : start + BATCH_MAX_BLOBS])
            response = self._send("POST", "/blobs/batch", bulk=True, json={"digests": part})
            self._raise_for(response)
            try:
                out.extend(split_batch(response.content, len(part)))
            except ValueError as exc:
                raise RegistryUnavailable(f"{self.url}: bad batch answer: {exc}") from None
        return out

    def chunk_index(self, digest: str) -> ChunkIndex | None:
        response = self._send("GET", f"/blobs/{blob_key(digest)}/chunks", bulk=True)
        self._raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        return ChunkIndex.from_bytes(response.content)

    # ---- runs (routes under the entity: server/runs.py) -----------------------------------

    def _runs(self, entity: str) -> str:
        return f"/entities/{_q(entity)}/runs"

    def create_run(self, entity: str, project: str, *, name: str | None = None,
                   job_type: str | None = None, config: dict[str, Any] | None = None,
                   run_id: str | None = None) -> RunInfo:
        # the id is chosen here, so that a creation retried after a lost answer finds the
        # run the first one made instead of making a second
        body = {"id": run_id or new_run_id(), "project": project, "name": name,
                "job_type": job_type, "config": config}
        return RunInfo.from_dict(self._json("POST", self._runs(entity), json=body))

    def run(self, entity: str, run_id: str) -> RunInfo:
        return RunInfo.from_dict(self._json("GET", f"{self._runs(entity)}/{_q(run_id)}"))

    def finish_run(self, entity: str, run_id: str, state: str) -> RunInfo:
        return RunInfo.from_dict(self._json("PATCH", f"{self._runs(entity)}/{_q(run_id)}",
                                            json={"state": state}))

    def link_run(self, entity: str, run_id: str, version_id: str, kind: str) -> None:
        self._json("PUT", f"{self._runs(entity)}/{_q(run_id)}/{_q(kind)}/{_q(version_id)}")

    def run_versions(self, entity: str, run_id: str, kind: str) -> list[VersionInfo]:
        raw = self._json("GET", f"{self._runs(entity)}/{_q(run_id)}/{_q(kind)}")
        return [VersionInfo.from_dict(v) for v in raw]

    def version_runs(self, entity: str, version_id: str, kind: str) -> list[RunInfo]:
        path = f"/entities/{_q(entity)}/versions/{_q(version_id)}/runs/{_q(kind)}"
        return [RunInfo.from_dict(r) for r in self._json("GET", path)]


def _said(response: httpx.Response) -> str:
    """What a registry's error answer says (": MESSAGE"), for a 5xx retried and given up on:
    "blob storage cannot be reached" tells more than "HTTP 503"."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return f": {redacted(str(message))[:500]}" if isinstance(message, str) else ""


def _read_exact(response: httpx.Response, size: int) -> bytes | bytearray:
    """The body of a 206 answer, which must be exactly ``size`` bytes, in one buffer."""
    buf: bytes | bytearray = b""
    view: memoryview | None = None
    pos = 0
    for piece in response.iter_bytes():
        n = len(piece)
        if pos + n > size:
            raise _Retryable(f"range answer longer than the {size} bytes asked for")
        if pos == 0 and n == size:
            buf = piece  # the whole body in one block, as the bulk transport reads it
        else:
            if view is None:
                buf = bytearray(size)
                view = memoryview(buf)
            view[pos : pos + n] = piece
        pos += n
    if pos != size:
        raise _Retryable(f"range answer ended after {pos} of {size} bytes")
    return buf


class _LockedTTLCache(TTLCache[str, str]):
    """A TTLCache safe to share between the worker threads that read blobs."""

    def __init__(self, maxsize: int, ttl: float) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl)
        self._lock = threading.Lock()

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return super().get(key, default)

    def __setitem__(self, key: str, value: str) -> None:
        with self._lock:
            super().__setitem__(key, value)

    def pop(self, key: str, default: Any = None) -> Any:
        with self._lock:
            return super().pop(key, default)


class _FileBody:
    """A request body read from a file in blocks; iterating again starts over, so a retried
    upload sends the whole file again (a generator would send nothing the second time)."""

    def __init__(self, path: Path, on_bytes: Callable[[int], None] | None) -> None:
        self.path = path
        self.on_bytes = on_bytes

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            while block := f.read(_UPLOAD_BLOCK):
                if self.on_bytes:
                    self.on_bytes(len(block))
                yield block


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("registry request failed (attempt %d): %s; retrying", state.attempt_number, exc)

