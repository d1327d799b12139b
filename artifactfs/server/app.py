"""The registry's HTTP API: an ASGI application (Starlette) over a store folder.

Every route is under ``/api/v1`` and needs ``Authorization: Bearer KEY`` (but the health
route, ``server/health.py``). A key belongs to one entity: asking about another entity's
things answers 404, as if they did not exist; a read-only key asking to change anything
answers 403. Errors are JSON: ``{"error": {"type": "NotFound", "message": "..."}}``. A
database or blob store that cannot be used now answers 503 with ``Retry-After``, and one
warning line in the log. See docs/api.md.

Blocking work (SQLite, file I/O, hashing) runs in worker threads (``anyio.to_thread``),
so one slow upload does not stall other requests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from cachetools import TTLCache
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from artifactfs.core.digests import blob_key, blob_key_or_none
from artifactfs.core.errors import (
    ArtifactFSError,
    DatabaseUnavailable,
    NotFound,
    PermissionDenied,
    RegistryUnavailable,
)
from artifactfs.core.folders import (
    FOLDER_BATCH_BYTES,
    FOLDER_BATCH_MAX,
    check_folder_path,
    join_rows,
)
from artifactfs.core.limits import escaped, finite_float
from artifactfs.core.manifest import Manifest
from artifactfs.core.names import (
    validate_alias,
    validate_commit_key,
    validate_name,
    validate_type,
)
from artifactfs.core.records import VersionInfo
from artifactfs.core.wire import (
    API_PREFIX,
    BATCH_MAX_BLOBS,
    BATCH_MAX_BYTES,
    RangeNotSatisfiable,
    batch_body,
    error_body,
    parse_range,
    status_for,
)
from artifactfs.server.health import HEALTH_PATH, Health
from artifactfs.server.metrics import (
    METRICS_PATH,
    MISSING_KEY,
    READ_ONLY_KEY,
    UNKNOWN_KEY,
    ServerMetrics,
)
from artifactfs.server.runs import read_only_allowed, run_routes
from artifactfs.server.web import is_web_path, web_routes
from artifactfs.store import Store
from artifactfs.store.blobs import signed_blob_url
from artifactfs.store.blobstore import BatchTooLarge, ByteStream

__all__ = ["MAX_BLOB_BYTES", "MAX_JSON_BYTES", "MAX_MANIFEST_BYTES", "RETRY_AFTER",
           "create_app"]

log = logging.getLogger("artifactfs.server")

MAX_JSON_BYTES = 64 << 20
"""Largest JSON body accepted (a manifest of ~300,000 entries, sent inline in a commit)."""
MAX_MANIFEST_BYTES = 256 << 20
"""Largest manifest a commit may name by reference (``manifest_blob``): some 2.5 million
entries of ImageNet's shape (94 bytes each; its 1,281,167 train files take 120 MB). The
server holds it parsed while it commits, about ten times its size."""
MAX_BLOB_BYTES = 5 << 40
"""Largest blob an upload may announce (S3's limit for one object, 5 TiB)."""
_STREAM_BLOCK = 1 << 20
# a blob range up to this size is read with one pread and sent as one body: the chunk runs
# mounts ask for, without a thread hop per block
_READ_AT_ONCE = 16 << 20
# a JSON body up to this size is parsed on the event loop (well under a millisecond); a
# larger one in a worker thread: a manifest of 400,000 entries takes seconds to parse
_PARSE_ON_LOOP = 64 << 10
_IMMUTABLE = "public, max-age=31536000, immutable"
BLOB_URL_LIFETIME = 600
"""Seconds a signed --blob-url-base address or a presigned storage URL works: longer than a
client remembers it (five minutes, registry/http.py), short enough that a leaked one is soon
useless."""


RETRY_AFTER = 2
"""Seconds a 503 for a database or blob store that cannot be used now tells a client to wait
(``Retry-After``) before it asks again: PostgreSQL restarts in a second or two, and the
HTTP client (registry/http.py), which waits no less, makes four attempts, so it rides out
some 6 s of an outage; a longer one is reported (the CLI's ``error:`` line)."""
_DATABASE_DOWN = ("the registry cannot use its database now; try again in a few seconds "
                  "(the registry's log says why)")

Endpoint = Callable[[Request], Awaitable[Response]]


class HTTPError(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


# POSTs that only read: their bodies are too long for a URL
_READ_POSTS = frozenset({API_PREFIX + "/blobs/missing", API_PREFIX + "/blobs/batch"})


async def _iterate(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _hex_to_digest(key: str) -> str:
    """``/blobs/{hex}`` names blobs by hex MD5; turn it back into the base64 entry digest."""
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise HTTPError(400, "InvalidName", f"blob key {key!r} is not a hex MD5")
    return base64.b64encode(raw).decode()


class Registry:
    """The route handlers, bound to one store."""

    def __init__(self, store: Store, blob_url_base: str | None,
                 blob_url_secret: str | None, *, max_json_bytes: int = MAX_JSON_BYTES,
                 max_manifest_bytes: int = MAX_MANIFEST_BYTES,
                 blob_url_lifetime: int = BLOB_URL_LIFETIME,
                 metrics: ServerMetrics | None = None) -> None:
        self.store = store
        self.metrics = metrics or ServerMetrics()
        self.blob_url_lifetime = blob_url_lifetime
        self.max_json_bytes = max_json_bytes
        self.max_manifest_bytes = max_manifest_bytes
        self.db = store.db
        self.access = store.access
        self.blob_url_base = blob_url_base.rstrip("/") if blob_url_base else None
        self._blob_url_secret = blob_url_secret

    # ---- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _entity(request: Request) -> str:
        entity = request.path_params["entity"]
        mine = request.state.entity
        if entity != mine:
            # the same answer for every other entity, existing or not: it says whose the
            # key is (the caller's own business), nothing of the entity asked for
            raise PermissionDenied(
                f"this API key is for entity {mine!r}, not '{escaped(entity)}': set "
                f"ARTIFACTFS_ENTITY={mine}, or use a key made for that entity "
                "('artifactfs key create ENTITY' where the store is)"
            )
        return entity

    def _version(self, request: Request) -> VersionInfo:
        info: VersionInfo = self.db.version_by_id(request.path_params["vid"])
        if info.entity != request.state.entity:
            raise NotFound(f"artifact version with id {request.path_params['vid']!r} not found")
        return info

    async def _json(self, request: Request) -> dict[str, Any]:
        limit = self.max_json_bytes
        too_large = HTTPError(413, "TooLarge", f"JSON body exceeds {limit} bytes; a larger "
                              "manifest is committed by reference (see 'manifest_blob')")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise too_large
        if len(body) <= _PARSE_ON_LOOP:
            return _parse_json(body)
        return await anyio.to_thread.run_sync(_parse_json, body, True)

    @staticmethod
    def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...],
               default: Any = ...) -> Any:
        if name not in body or body[name] is None:
            if default is ...:
                raise HTTPError(400, "InvalidRequest", f"field {name!r} is required")
            return default
        value = body[name]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise HTTPError(400, "InvalidRequest", f"field {name!r} has the wrong type")
        return value

    async def _run(self, func: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: func(*args))

    # ---- listing ---------------------------------------------------------------------------

    async def whoami(self, request: Request) -> Response:
        """The key's entity and rights: what a client that was not told an entity works in."""
        return JSONResponse({"entity": request.state.entity,
                             "read_only": request.state.read_only})

    async def projects(self, request: Request) -> Response:
        entity = self._entity(request)
        return JSONResponse(await self._run(self.db.list_projects, entity))

    async def types(self, request: Request) -> Response:
        entity = self._entity(request)
        return JSONResponse(
            await self._run(self.db.list_types, entity, request.path_params["project"])
        )

    async def collections(self, request: Request) -> Response:
        entity = self._entity(request)
        type_ = request.query_params.get("type")
        found = await self._run(
            self.db.list_collections, entity, request.path_params["project"], type_
        )
        return JSONResponse([c.to_dict() for c in found])

    async def collection(self, request: Request) -> Response:
        entity = self._entity(request)
        p = request.path_params
        type_ = await self._run(self.db.collection_type, entity, p["project"], p["name"])
        if type_ is None:
            raise NotFound(f"artifact {entity}/{p['project']}/{p['name']} not found")
        return JSONResponse({"entity": entity, "project": p["project"], "name": p["name"],
                             "type": type_})

    async def versions(self, request: Request) -> Response:
        entity = self._entity(request)
        p = request.path_params
        found = await self._run(self.db.list_versions, entity, p["project"], p["name"])
        return JSONResponse([v.to_wire() for v in found])

    async def resolve(self, request: Request) -> Response:
        entity = self._entity(request)
        p = request.path_params
        validate_alias(p["alias"], allow_version=True)
        info = await self._run(self.db.resolve, entity, p["project"], p["name"], p["alias"])
        return JSONResponse(info.to_wire())

    # ---- versions --------------------------------------------------------------------------

    async def version(self, request: Request) -> Response:
        info = await self._run(self._version, request)
        return JSONResponse(info.to_wire())

    async def manifest(self, request: Request) -> Response:
        info = await self._run(self._version, request)
        body, etag = await self._run(self._manifest_body, info.id)
        headers = {"ETag": etag, "Cache-Control": _IMMUTABLE}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type="application/json", headers=headers)

    async def folders(self, request: Request) -> Response:
        """Listings of folders of a version (core/folders.py), ``?path=FOLDER`` once for
        each (``path=`` is the root), at most FOLDER_BATCH_MAX: a JSON list of the first of
        them, as many as fit in FOLDER_BATCH_BYTES (the first always); the client asks
        again for the rest. Read from their own rows: the manifest is neither read nor
        parsed."""
        params = request.query_params
        unknown = sorted(set(params) - {"path"})
        if unknown:
            raise HTTPError(400, "InvalidRequest", f"unknown query parameter "
                            f"{escaped(unknown[0])}; this route takes only 'path'")
        paths = params.getlist("path")
        if not paths:
            raise HTTPError(400, "InvalidRequest", "name the folders to list: ?path=FOLDER, "
                            "once for each ('path=' alone is the version's root)")
        if len(paths) > FOLDER_BATCH_MAX:
            raise HTTPError(400, "InvalidRequest", f"{len(paths)} folders asked for; at most "
                            f"{FOLDER_BATCH_MAX} a request")
        wanted = [check_folder_path(p) for p in paths]
        info = await self._run(self._version, request)
        texts = await self._run(self.db.folder_texts, info.id, wanted, FOLDER_BATCH_BYTES)
        return Response(join_rows(texts).encode(), media_type="application/json",
                        headers={"Cache-Control": _IMMUTABLE})

    def _manifest_body(self, version_id: str) -> tuple[bytes, str]:
        """A stored manifest's bytes and strong ETag, made in a worker thread: encoding and
        hashing tens of megabytes would stall the event loop."""
        body = self.db.manifest_json(version_id).encode()
        return body, '"' + hashlib.sha256(body).hexdigest() + '"'

    async def commit(self, request: Request) -> Response:
        entity = self._entity(request)
        p = request.path_params
        body = await self._json(request)
        type_ = validate_type(self._field(body, "type", str))
        manifest = await self._commit_manifest(request.state.entity, body)
        aliases = self._field(body, "aliases", list, [])
        if not all(isinstance(a, str) for a in aliases):
            raise HTTPError(400, "InvalidRequest", "field 'aliases' must be a list of strings")
        info = await self._run(
            lambda: self.store.commit(
                caller=entity, entity=entity, project=validate_name(p["project"], "project"),
                name=validate_name(p["name"], "artifact name"), type_=type_,
                manifest=manifest, description=self._field(body, "description", str, None),
                metadata=self._field(body, "metadata", dict, {}), aliases=aliases,
                commit_key=self._field(body, "commit_key", str, None),
                tags=self._field(body, "tags", list, []),
            )
        )
        self.metrics.committed(unchanged=info.unchanged)
        if info.unchanged:  # content it held already: no version made (Store.commit)
            log.info("commit to %s: content held already, no version made", info.qualified_name)
            return JSONResponse(info.to_wire(), status_code=200)
        log.info("committed %s", info.qualified_name)
        return JSONResponse(info.to_wire(), status_code=201)

    async def _commit_manifest(self, entity: str, body: dict[str, Any]) -> Manifest:
        """The manifest a commit names: inline (``manifest``), or by reference to a blob
        this entity uploaded holding its JSON (``manifest_blob``, a base64 MD5), for one too
        large for a JSON body. A reference reaches only the asking entity's blobs, like an
        entry (store/blobs.py): one it may not reach is answered as one not uploaded."""
        inline, ref = body.get("manifest"), body.get("manifest_blob")
        if (inline is None) == (ref is None):
            raise HTTPError(400, "InvalidRequest",
                            "a commit needs exactly one of 'manifest' and 'manifest_blob'")
        if ref is None:
            # off the event loop: 400,000 entries take a second or more to check
            raw = self._field(body, "manifest", dict)  # parsed for this request alone
            return await self._run(lambda: Manifest.from_dict(raw, consume=True))
        if not isinstance(ref, str) or blob_key_or_none(ref) is None:
            raise HTTPError(400, "InvalidRequest",
                            "field 'manifest_blob' must be a base64 MD5 string")
        return await self._run(self._manifest_from_blob, entity, ref)

    def _manifest_from_blob(self, entity: str, digest: str) -> Manifest:
        """Read, parse and check a manifest blob, in a worker thread: its parse takes
        seconds at a million entries, and is preemptible (see ``_parse_json``) so that the
        event loop goes on answering meanwhile. Bounded like a JSON body, by its own limit.

        Raises HTTPError 400 for a blob not uploaded or not valid JSON, 413 for one over
        the limit; InvalidManifest (400) for a manifest that breaks the rules.
        """
        try:
            size = self.access.size(entity, digest)
            if size > self.max_manifest_bytes:
                raise HTTPError(413, "TooLarge", f"manifest blob {digest} has {size} bytes; "
                                f"at most {self.max_manifest_bytes} are accepted")
            text = self.access.read(entity, digest)
        except NotFound:
            raise HTTPError(400, "InvalidRequest",
                            f"manifest blob {digest} was not uploaded: PUT its JSON to "
                            f"/blobs/{blob_key(digest)} first") from None
        try:
            raw = _parse_json(text, True)
        except HTTPError as exc:
            raise HTTPError(400, exc.kind, f"manifest blob {digest}: {exc.message}") from None
        del text
        return Manifest.from_dict(raw, consume=True)

    async def commit_by_key(self, request: Request) -> Response:
        """The version a keyed commit made: how a save retried after a crash finds it."""
        entity = self._entity(request)
        key = validate_commit_key(request.path_params["key"])
        info = await self._run(self.db.version_by_commit_key, entity, key)
        if info is None:
            raise NotFound(f"no version was committed with key {key!r}")
        return JSONResponse(info.to_wire())

    async def update_version(self, request: Request) -> Response:
        info = await self._run(self._version, request)
        body = await self._json(request)
        info = await self._run(
            lambda: self.db.update_version(
                info.id, description=self._field(body, "description", str, None),
                metadata=self._field(body, "metadata", dict, None),
                tags=self._field(body, "tags", list, None),
            )
        )
        return JSONResponse(info.to_wire())

    async def delete_version(self, request: Request) -> Response:
        info = await self._run(self._version, request)
        force = request.query_params.get("delete_aliases", "") in ("1", "true", "yes")
        await self._run(lambda: self.db.delete_version(info.id, delete_aliases=force))
        return Response(status_code=204)

    async def put_alias(self, request: Request) -> Response:
        info = await self._run(self._version, request)
        info = await self._run(self.db.add_alias, info.id, request.path_params["alias"])
        return JSONResponse(info.to_wire())

    async def delete_alias(self, request: Request) -> Response:
        info = await self._run(self._version, request)
        info = await self._run(self.db.remove_alias, info.id, request.path_params["alias"])
        return JSONResponse(info.to_wire())

    # ---- blobs -----------------------------------------------------------------------------

    async def missing(self, request: Request) -> Response:
        body = await self._json(request)
        digests = self._field(body, "digests", list)
        if not all(isinstance(d, str) and blob_key_or_none(d) for d in digests):
            raise HTTPError(400, "InvalidRequest", "'digests' must be base64 MD5 strings")
        missing = await self._run(self.access.missing, request.state.entity, digests)
        return JSONResponse({"missing": sorted(missing)})

    async def batch(self, request: Request) -> Response:
        """Whole blobs, several at once (see ``core.wire.batch_body``). Served from the store
        even behind --blob-url-base: a redirect per small blob is what batching avoids."""
        body = await self._json(request)
        digests = self._field(body, "digests", list)
        if not all(isinstance(d, str) and blob_key_or_none(d) for d in digests):
            raise HTTPError(400, "InvalidRequest", "'digests' must be base64 MD5 strings")
        if len(digests) > BATCH_MAX_BLOBS:
            raise HTTPError(400, "InvalidRequest",
                            f"at most {BATCH_MAX_BLOBS} digests per batch")
        pieces = batch_body(await self._run(self._read_batch, request.state.entity, digests))
        # the length is known: a client reads one body of that length, not one HTTP chunk
        # per blob
        return StreamingResponse(_iterate(pieces), media_type="application/octet-stream",
                                 headers={"Content-Length": str(sum(map(len, pieces)))})

    def _read_batch(self, entity: str, digests: list[str]) -> list[bytes | None]:
        try:  # None for any missing, or not the entity's
            return self.access.read_many(entity, digests, max_bytes=BATCH_MAX_BYTES)
        except BatchTooLarge as exc:
            raise HTTPError(413, "TooLarge", str(exc)) from None

    async def get_blob(self, request: Request) -> Response:
        digest = _hex_to_digest(request.path_params["key"])
        key = request.path_params["key"]
        entity = request.state.entity
        if self.blob_url_base:
            await self._run(self.access.size, entity, digest)  # NotFound unless it may read it
            assert self._blob_url_secret is not None
            url = signed_blob_url(self.blob_url_base, digest, secret=self._blob_url_secret,
                                  expires=int(time.time()) + self.blob_url_lifetime)
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
        if request.method == "GET":
            # straight from storage where it can sign an address (a bucket): the bytes never
            # pass through this server; NotFound unless the entity may read a stored blob
            presigned = await self._run(lambda: self.access.presign_get(
                entity, digest, lifetime=self.blob_url_lifetime))
            if presigned is not None:
                return RedirectResponse(presigned, status_code=307,
                                        headers={"Cache-Control": "no-store"})
        headers = {"Accept-Ranges": "bytes", "Cache-Control": _IMMUTABLE, "ETag": f'"{key}"'}
        head = request.method == "HEAD"
        try:
            size, wanted, body, handle = await self._run(
                self._open_blob, entity, digest, request.headers.get("range"), head)
        except RangeNotSatisfiable as exc:
            return JSONResponse(
                error_body("RangeNotSatisfiable", f"blob has {exc.size} bytes"), status_code=416,
                headers={"Content-Range": f"bytes */{exc.size}", **headers},
            )
        start, end = wanted if wanted else (0, size)
        status = 206 if wanted else 200
        if wanted:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        if handle is None:  # HEAD, or a range small enough to read in one go
            return Response(body, status_code=status, headers=headers,
                            media_type="application/octet-stream")

        async def stream() -> AsyncIterator[bytes]:
            try:
                left = end - start
                while left > 0:
                    block = await anyio.to_thread.run_sync(handle.read,
                                                           min(_STREAM_BLOCK, left))
                    if not block:
                        break
                    left -= len(block)
                    yield block
            finally:
                handle.close()

        return StreamingResponse(stream(), status_code=status, headers=headers,
                                 media_type="application/octet-stream")

    def _open_blob(
        self, entity: str, digest: str, range_header: str | None, head: bool
    ) -> tuple[int, tuple[int, int] | None, bytes, ByteStream | None]:
        """Size, range and the bytes of a blob read, in one trip to a worker thread (the
        access check included): the bytes themselves when they fit in one read, else a
        stream of the range."""
        size = self.access.size(entity, digest)
        wanted = parse_range(range_header, size)
        start, end = wanted if wanted else (0, size)
        if head:
            return size, wanted, b"", None
        if end - start <= _READ_AT_ONCE:
            body = self.access.read(entity, digest, start, end)
            if len(body) != end - start:  # cut short underneath us: no partial answer
                raise HTTPError(500, "InternalError", f"blob {digest} is shorter than "
                                "its recorded size")
            return size, wanted, body, None
        return size, wanted, b"", self.access.open_range(entity, digest, start, end)

    async def chunk_index(self, request: Request) -> Response:
        digest = _hex_to_digest(request.path_params["key"])
        index = await self._run(self.access.chunk_index, request.state.entity, digest)
        if index is None:
            return Response(status_code=204)
        return Response(index.to_bytes(), media_type="application/octet-stream",
                        headers={"Cache-Control": _IMMUTABLE})

    async def put_blob(self, request: Request) -> Response:
        """Receive a blob for the asking entity. Its bytes are always checked, also when the
        blob is stored already for another entity (then hashed, not written again): only an
        upload of the whole file gives access to it. ``stored`` is false when this entity
        reached the blob already (the body is then drained unread), so the answer says
        nothing about what other entities hold."""
        digest = _hex_to_digest(request.path_params["key"])
        receiver = await self._run(self.access.receiver, request.state.entity, digest)
        if receiver is None:
            async for _ in request.stream():  # drain, so the connection can be reused
                pass
            return JSONResponse({"digest": digest, "stored": False})
        pending = bytearray()
        try:
            async for part in request.stream():
                pending += part
                if len(pending) >= _STREAM_BLOCK:  # hand the thread 1 MiB at a time
                    block, pending = bytes(pending), bytearray()
                    await self._run(receiver.write, block)
            await self._run(receiver.write, bytes(pending))
            await self._run(receiver.commit)
        finally:
            await self._run(receiver.abort)
        return JSONResponse({"digest": digest, "stored": True}, status_code=201)


    async def start_upload(self, request: Request) -> Response:
        """Where the asking entity uploads a blob straight to storage: ``{"method":
        "direct", "upload_id", "parts": [{"number", "url", "start", "end", "headers"}]}``, or
        ``{"method": "server"}`` when the store takes uploads only by PUT to this server, or
        ``{"stored": false}`` when the entity reaches that blob already (nothing to send)."""
        digest = _hex_to_digest(request.path_params["key"])
        size = self._field(await self._json(request), "size", int)
        if not 0 <= size <= MAX_BLOB_BYTES:
            raise HTTPError(400, "InvalidRequest", f"'size' must be 0 to {MAX_BLOB_BYTES}")
        entity = request.state.entity
        if await self._run(self.access.reaches, entity, digest):
            return JSONResponse({"digest": digest, "stored": False})
        # every part's address is signed now, so a large blob's last part must still find
        # its address valid: the lifetime grows with the size (5 MB/s at least), up to the
        # 7 days signature version 4 allows
        lifetime = min(max(self.blob_url_lifetime, 60 + size // (5 * 10**6)), 7 * 86400)
        plan = await self._run(lambda: self.access.start_upload(
            entity, digest, size, lifetime=lifetime))
        if plan is None:
            return JSONResponse({"method": "server"})
        return JSONResponse({"method": "direct", **plan.to_dict()},
                            headers={"Cache-Control": "no-store"})

    async def finish_upload(self, request: Request) -> Response:
        """The upload of ``start_upload`` is done: its bytes are checked (and the chunk index
        built) before the blob counts as present for the entity; 400 DigestMismatch, nothing
        stored, when they are not the blob's."""
        digest = _hex_to_digest(request.path_params["key"])
        upload_id = self._field(await self._json(request), "upload_id", str)
        await self._run(self.access.finish_upload, request.state.entity, digest, upload_id)
        return JSONResponse({"digest": digest, "stored": True}, status_code=201)


KEY_CACHE_SECONDS = 60.0
"""How long a server trusts a key it has checked, by default (``serve --key-cache-seconds``)."""


class AuthAndLog:
    """Checks the bearer key and writes one log line per request (never the key)."""

    def __init__(self, app: ASGIApp, store: Store,
                 key_cache_seconds: float = KEY_CACHE_SECONDS,
                 metrics: ServerMetrics | None = None) -> None:
        self.app = app
        self.db = store.db
        self.metrics = metrics or ServerMetrics()
        # a key lookup costs a thread hop and a query on every request; known keys are
        # trusted for a minute by default (so a revoked key stops working within a minute),
        # or not at all with 0 (every request checked against the database)
        self._known: TTLCache[str, tuple[str, bool]] | None = TTLCache(
            maxsize=1024, ttl=key_cache_seconds) if key_cache_seconds > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0, "bytes": 0, "received": 0}  # code 0: no answer has begun

        async def receive_counted() -> Any:  # for artifactfs_http_request_bytes
            message = await receive()
            if message["type"] == "http.request":
                status["received"] += len(message.get("body", b""))
            return message

        async def send_logged(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "http.response.body":
                status["bytes"] += len(message.get("body", b""))
            await send(message)

        request = Request(scope)
        entity = "-"
        health = scope["path"] == HEALTH_PATH
        self.metrics.in_progress.inc()
        try:
            # the health route for a load balancer, which has no key; /metrics for a
            # scraper only with --metrics-public (docs/metrics.md); the web view's pages
            # check their session cookie themselves (server/web/pages.py), and only they
            if health or self.metrics.keyless(scope["path"]) or is_web_path(scope["path"]):
                await self.app(scope, receive_counted, send_logged)
                return
            found = await self._authenticate(request)
            if isinstance(found, Response):
                await found(scope, receive, send_logged)
                return
            entity, read_only = found
            writes = scope["method"] not in ("GET", "HEAD") and scope["path"] not in _READ_POSTS
            if read_only and writes and not read_only_allowed(scope["method"], scope["path"]):
                self.metrics.auth_failed(READ_ONLY_KEY)
                resp = _error(403, "PermissionDenied", "this API key is read-only")
                await resp(scope, receive, send_logged)
                return
            scope.setdefault("state", {}).update(entity=entity, read_only=read_only)
            await self.app(scope, receive_counted, send_logged)
        except ClientDisconnect:  # from a streamed answer: nobody is left to answer
            log.info("client went away during %s %s", scope["method"], scope["path"])
            status["code"] = status["code"] or 499
        except Exception as exc:
            if isinstance(exc, RegistryUnavailable) and not status["code"]:
                # the key check found the database down: not a fault of this server's
                resp = unavailable(scope["method"], scope["path"], exc)
                await resp(scope, receive, send_logged)
                return
            # a fault of the server itself (a failing disk, a bug) is answered here, inside
            # the access log, so that its line counts the bytes of the answer really sent
            if status["code"]:
                # the answer had begun: the connection can only be dropped (uvicorn drops
                # it, and logs the traceback)
                log.error("internal error on %s %s after the answer began",
                          scope["method"], scope["path"])
                raise
            log.exception("internal error on %s %s", scope["method"], escaped(scope["path"]))
            resp = _error(500, "InternalError", "internal server error; see the server log")
            await resp(scope, receive, send_logged)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.in_progress.dec()
            self.metrics.request_done(scope, status["code"] or 500, elapsed,
                                      status["received"], status["bytes"])
            # a balancer's polls, every few seconds from each, would be most of the log:
            # only a health answer that is not 200 is written
            if not (health and status["code"] == 200):
                log.info(
                    '%s %s "%s %s" %d %d %.1fms', _client(scope), entity, scope["method"],
                    escaped(scope["path"]), status["code"] or 500, status["bytes"],
                    elapsed * 1000,
                )

    async def _authenticate(self, request: Request) -> tuple[str, bool] | Response:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            self.metrics.auth_failed(MISSING_KEY)
            return _error(401, "Unauthorized", "an API key is required: "
                          "send 'Authorization: Bearer KEY'")
        key = key.strip()
        found = self._known.get(key) if self._known is not None else None
        if found is None:
            found = await anyio.to_thread.run_sync(self.db.check_key, key)
            if found is None:
                self.metrics.auth_failed(UNKNOWN_KEY)
                return _error(401, "Unauthorized", "unknown API key")
            if self._known is not None:
                self._known[key] = found
        return found


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


def _error(status: int, kind: str, message: str) -> Response:
    headers = {"WWW-Authenticate": 'Bearer realm="artifactfs"'} if status == 401 else None
    return JSONResponse(error_body(kind, message), status_code=status, headers=headers)


def unavailable(method: str, path: str, exc: RegistryUnavailable) -> Response:
    """The answer to a request the database or the blob store could not serve now: 503,
    ``Retry-After``, and one warning line (no traceback: nothing here is a bug). The line
    names the database without its password, or the blob store; the answer does not name
    the database, whose address is nothing a client (perhaps without a key yet) needs."""
    log.warning("%s %s: %s", method, escaped(path), exc)
    message = _DATABASE_DOWN if isinstance(exc, DatabaseUnavailable) else str(exc)
    response = _error(503, "RegistryUnavailable", message)
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def _parse_json(body: bytes | bytearray, preemptible: bool = False) -> dict[str, Any]:
    """A request's JSON object; raises HTTPError (400) saying what is wrong with it.

    ``preemptible`` (for a large body, parsed in a worker thread): json.loads is one C call
    that holds the GIL until it returns, 1 s for a manifest of 400,000 entries, and the
    event loop answers nothing meanwhile; a Python hook per object lets the interpreter
    hand the GIL over between objects, for a parse about twice as slow.
    """
    hook = _object_from_pairs if preemptible else None
    try:
        value = json.loads(body, parse_constant=_reject_constant, parse_float=finite_float,
                           object_pairs_hook=hook)
    except (ValueError, RecursionError) as exc:
        raise HTTPError(400, "InvalidJSON", f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HTTPError(400, "InvalidJSON", "body must be a JSON object")
    return value


def _object_from_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict(pairs)  # Python, not C: the interpreter may switch threads here


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed (JSON has no NaN or Infinity)")


def _handle(func: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            return await func(request)
        except HTTPError as exc:
            return _error(exc.status, exc.kind, exc.message)
        except ClientDisconnect:
            log.info("client went away during %s %s", request.method, request.url.path)
            return Response(status_code=499)
        except RegistryUnavailable as exc:
            return unavailable(request.method, request.url.path, exc)
        except ArtifactFSError as exc:
            return _error(status_for(exc), type(exc).__name__, str(exc))

    return endpoint


def create_app(store: Store, *, blob_url_base: str | None = None,
               blob_url_secret: str | None = None, max_json_bytes: int = MAX_JSON_BYTES,
               max_manifest_bytes: int = MAX_MANIFEST_BYTES,
               blob_url_lifetime: int = BLOB_URL_LIFETIME,
               key_cache_seconds: float = KEY_CACHE_SECONDS,
               metrics_public: bool = False,
               web_secret: str | None = None) -> Starlette:
    """The ASGI application serving ``store``.

    Blob reads (GET) are redirected to an address the blob store presigns when it can (a
    bucket), for ``blob_url_lifetime`` seconds. For a folder store, ``blob_url_base`` sends
    them to a static server of the same folder instead, by addresses signed with
    ``blob_url_secret`` (required with it; see ``store.blobs.signed_blob_url``).
    ``max_json_bytes`` bounds every JSON body (an inline manifest with it),
    ``max_manifest_bytes`` a manifest committed by reference. A key found good is trusted
    for ``key_cache_seconds`` (0: checked on every request), so a revoked one may work
    that long. ``GET /metrics`` (server/metrics.py) needs a key too unless
    ``metrics_public``. ``web_secret`` signs the web view's session cookies (server/web/);
    without one a random secret is made, and its sessions end with this process
    (docs/web.md).
    """
    if blob_url_base and not blob_url_secret:
        raise ValueError("a blob URL base needs a secret to sign its addresses with")
    metrics = ServerMetrics(public=metrics_public)
    r = Registry(store, blob_url_base, blob_url_secret, max_json_bytes=max_json_bytes,
                 max_manifest_bytes=max_manifest_bytes, blob_url_lifetime=blob_url_lifetime,
                 metrics=metrics)
    e = API_PREFIX + "/entities/{entity}"
    c = e + "/projects/{project}/collections/{name}"
    v = API_PREFIX + "/versions/{vid}"
    b = API_PREFIX + "/blobs/{key}"
    health = Health(store, retry_after=RETRY_AFTER)
    routes = [
        Route(HEALTH_PATH, health.endpoint, methods=["GET"]),
        Route(METRICS_PATH, metrics.endpoint, methods=["GET"]),
        Route(API_PREFIX + "/whoami", _handle(r.whoami)),
        Route(e + "/projects", _handle(r.projects)),
        Route(e + "/projects/{project}/types", _handle(r.types)),
        Route(e + "/projects/{project}/collections", _handle(r.collections)),
        Route(c, _handle(r.collection)),
        Route(c + "/versions", _handle(r.versions), methods=["GET"]),
        Route(c + "/versions", _handle(r.commit), methods=["POST"]),
        Route(c + "/resolve/{alias}", _handle(r.resolve)),
        Route(e + "/commits/{key}", _handle(r.commit_by_key), methods=["GET"]),
        Route(v, _handle(r.version), methods=["GET"]),
        Route(v, _handle(r.update_version), methods=["PATCH"]),
        Route(v, _handle(r.delete_version), methods=["DELETE"]),
        Route(v + "/manifest", _handle(r.manifest)),
        Route(v + "/folders", _handle(r.folders), methods=["GET"]),
        Route(v + "/aliases/{alias}", _handle(r.put_alias), methods=["PUT"]),
        Route(v + "/aliases/{alias}", _handle(r.delete_alias), methods=["DELETE"]),
        Route(API_PREFIX + "/blobs/missing", _handle(r.missing), methods=["POST"]),
        Route(API_PREFIX + "/blobs/batch", _handle(r.batch), methods=["POST"]),
        Route(b, _handle(r.get_blob), methods=["GET", "HEAD"]),
        Route(b, _handle(r.put_blob), methods=["PUT"]),
        Route(b + "/chunks", _handle(r.chunk_index)),
        Route(b + "/uploads", _handle(r.start_upload), methods=["POST"]),
        Route(b + "/uploaded", _handle(r.finish_upload), methods=["POST"]),
        *run_routes(r, _handle),  # runs and lineage (server/runs.py)
        *web_routes(store, web_secret or _random_web_secret()),  # the web view at /
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(AuthAndLog, store=store, key_cache_seconds=key_cache_seconds,
                               metrics=metrics)],
        exception_handlers={404: _not_found, 405: _not_allowed},
    )


def _random_web_secret() -> str:
    log.warning("no web secret given (serve --web-secret-file or ARTIFACTFS_WEB_SECRET): web "
                "sessions end when this server stops, and other replicas refuse them")
    return secrets.token_urlsafe(32)


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(404, "NotFound", f"no such endpoint: {request.url.path}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    response = _error(405, "MethodNotAllowed", f"{request.method} is not allowed here")
    response.headers.update(getattr(exc, "headers", None) or {})
    return response
