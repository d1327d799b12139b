"""Manifest entries for ``Artifact.add_reference``, one builder per scheme, in W&B's forms.

The entries follow what the ``wandb`` package writes (docs/wandb-format.md, section 5), so
that an artifact moves between the two with equal digests, with one deliberate difference:
an ``http(s)://`` object served without an ETag gets the MD5 of its body as its digest (issue
18: something to check it by), where W&B stores the URL.

- ``file://``: a file, or every file under a folder; digest the MD5 of the bytes, size the
  file's, no ``extra``.
- ``http(s)://``: one object, at the URL of the last redirect; digest the ETag without its
  quotes (``extra.etag`` as sent), else the MD5 of the body; size ``Content-Length``, else
  the body's length.
- ``s3://``: an object, or every non-empty object under a prefix; digest the ETag without
  quotes, size the object's, ``extra.etag`` (also without quotes, as wandb writes it) and,
  in a versioned bucket, ``extra.versionID``.
- ``checksum=False``: one entry whose digest is the URI (for ``file://`` the MD5 of the
  file's URI text, with the file's size); no size elsewhere (0 here, none in W&B).

Every URI is stripped of credentials before it enters an entry or a message
(``core.references.clean_uri``); the request that reads a source now uses the URI as given
(a presigned URL, ``user:password@``). The sources are read with this client's own
configuration (boto3's chain for S3), never by a registry server.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from artifactfs.content.references import (
    file_ref_path,
    http_client,
    redact_httpx_log,
    s3_client,
)
from artifactfs.core.errors import ReferenceUnavailable
from artifactfs.core.manifest import MAX_REF_LENGTH, ManifestEntry, validate_entry_path
from artifactfs.core.references import (
    ETAG_EXTRA_KEY,
    VERSION_ID_EXTRA_KEY,
    clean_uri,
    scheme_of,
)
from artifactfs.files import hash_file

__all__ = ["BUILDERS", "DEFAULT_MAX_OBJECTS", "reference_entries"]

DEFAULT_MAX_OBJECTS = 10_000_000
"""W&B's bound on the files or objects one ``add_reference`` expands to."""

Builder = Callable[[str, "str | None", bool, int], list[ManifestEntry]]


def reference_entries(uri: str, name: str | None = None, *, checksum: bool = True,
                      max_objects: int | None = None) -> list[ManifestEntry]:
    """The entries ``add_reference(uri, name, checksum, max_objects)`` adds.

    Raises ValueError for a URI of no known scheme, a missing file, folder, object or
    prefix, more than ``max_objects`` of them, or an unusable entry path;
    ReferenceUnavailable when the source cannot be read now (refused, unreachable, no
    credentials).
    """
    if not isinstance(uri, str):
        raise ValueError(f"a reference is a URI string, not {type(uri).__name__}")
    scheme = scheme_of(uri)
    build = BUILDERS.get(scheme)
    if build is None:
        raise ValueError(
            f"reference {clean_uri(uri)!r}: artifactfs adds references of the schemes "
            f"{', '.join(sorted(BUILDERS))}, not {scheme}://"
        )
    bound = DEFAULT_MAX_OBJECTS if max_objects is None else max_objects
    if bound < 1:
        raise ValueError(f"max_objects must be at least 1, not {max_objects}")
    if name is not None:
        name = validate_entry_path(name.strip("/"))
    entries = build(uri, name, checksum, bound)
    for entry in entries:
        if entry.ref is not None and len(entry.ref) > MAX_REF_LENGTH:
            raise ValueError(f"reference {entry.ref[:80]!r}...: a URI is at most "
                             f"{MAX_REF_LENGTH} characters")
    return entries


def _joined(name: str | None, rel: str) -> str:
    return validate_entry_path(f"{name}/{rel}" if name else rel)


# ---- file:// -------------------------------------------------------------------------------


def file_entries(uri: str, name: str | None, checksum: bool, max_objects: int
                 ) -> list[ManifestEntry]:
    ref = clean_uri(uri)
    path = file_ref_path(uri)
    if not os.path.exists(path):
        raise ValueError(f"reference {ref!r}: no file or folder {path}")
    base = posixpath.basename(path.rstrip("/")) or path
    if not checksum:  # W&B's digest: the MD5 of the file's URI text; the size kept
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        text = Path(path).resolve().as_uri().encode()
        digest = base64.b64encode(hashlib.md5(text).digest()).decode()
        return [ManifestEntry(validate_entry_path(name or base), digest, size, ref=ref)]
    if os.path.isfile(path):
        content = hash_file(Path(path))  # MD5: references never get XXH128 (W&B)
        return [ManifestEntry(validate_entry_path(name or base), content.digest, content.size,
                              ref=ref)]
    if not os.path.isdir(path):  # a fifo, a socket, a device: nothing to hash or read
        raise ValueError(f"reference {ref!r}: {path} is neither a file nor a folder")
    found: list[tuple[str, str]] = []  # (relative path, file)
    for folder, dirs, files in os.walk(path):  # linked folders are not followed (W&B)
        dirs.sort()
        for file in sorted(files):
            full = os.path.join(folder, file)
            if not os.path.isfile(full):  # sockets, fifos, dangling links
                continue
            found.append((os.path.relpath(full, path).replace(os.sep, "/"), full))
            if len(found) > max_objects:
                raise ValueError(
                    f"reference {ref!r} holds more than max_objects={max_objects} files; "
                    "pass a larger max_objects"
                )
    entries = []
    for rel, full in found:
        content = hash_file(Path(full))
        entries.append(ManifestEntry(_joined(name, rel), content.digest, content.size,
                                     ref=posixpath.join(ref, rel)))
    return entries


# ---- http(s):// ----------------------------------------------------------------------------


def http_entries(uri: str, name: str | None, checksum: bool, max_objects: int
                 ) -> list[ManifestEntry]:
    ref = clean_uri(uri)
    if not checksum:
        base = posixpath.basename(urlsplit(ref).path)
        if not (name or base):
            raise ValueError(f"reference {ref!r} names no file: pass name=")
        return [ManifestEntry(validate_entry_path(name or base), ref, 0, ref=ref)]
    import httpx

    redact_httpx_log()
    try:
        with http_client() as client, client.stream("GET", uri) as rsp:
            final = clean_uri(str(rsp.url))
            if rsp.status_code >= 400:
                raise ValueError(f"reference {final!r}: the server answered HTTP "
                                 f"{rsp.status_code}")
            etag = rsp.headers.get("etag")
            length = rsp.headers.get("content-length")
            size = int(length) if length and length.isdigit() else None
            if etag:
                digest, extra = etag.strip('"'), {ETAG_EXTRA_KEY: etag}
                if size is None:  # the mount needs a size: count the body
                    size = sum(len(b) for b in rsp.iter_bytes())
            else:  # no ETag: the MD5 of the body (W&B would store the URL)
                md5 = hashlib.md5()
                size = 0
                for block in rsp.iter_bytes():
                    md5.update(block)
                    size += len(block)
                digest = base64.b64encode(md5.digest()).decode()
                extra = {}
    except httpx.HTTPError as exc:
        raise ReferenceUnavailable(f"reference {ref!r} cannot be read: "
                                   f"{type(exc).__name__}") from None
    base = posixpath.basename(urlsplit(final).path)
    if not (name or base):
        raise ValueError(f"reference {final!r} names no file: pass name=")
    return [ManifestEntry(validate_entry_path(name or base), digest, size, ref=final,
                          extra=extra)]


# ---- s3:// ---------------------------------------------------------------------------------


def s3_entries(uri: str, name: str | None, checksum: bool, max_objects: int
               ) -> list[ManifestEntry]:
    import botocore.exceptions

    parts = urlsplit(uri)
    bucket, key = parts.netloc.rpartition("@")[2], parts.path.lstrip("/")
    if not bucket:
        raise ValueError(f"reference {clean_uri(uri)!r} names no bucket: s3://BUCKET/KEY")
    version = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get(
        "versionId")
    base_ref = f"s3://{bucket}/{key}"
    if not checksum:
        return [ManifestEntry(validate_entry_path(name or key.rstrip("/") or bucket), base_ref,
                              0, ref=base_ref)]
    s3 = s3_client()
    try:
        head = None
        if key and not key.endswith("/"):
            try:
                kwargs = {"VersionId": version} if version else {}
                head = s3.head_object(Bucket=bucket, Key=key, **kwargs)
            except botocore.exceptions.ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code", "")) not in ("404", "NoSuchKey",
                                                                            "NotFound"):
                    raise
        if head is not None and "x-directory" not in str(head.get("ContentType", "")):
            entry_path = name or posixpath.basename(key)
            return [_s3_entry(validate_entry_path(entry_path), bucket, key,
                              str(head.get("ETag", "")), int(head["ContentLength"]),
                              head.get("VersionId"))]
        return _s3_prefix(s3, bucket, key, name, max_objects, base_ref)
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        raise ReferenceUnavailable(f"reference {base_ref!r} cannot be read: S3 answered "
                                   f"{code or 'an error'}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise ReferenceUnavailable(f"reference {base_ref!r} cannot be read: "
                                   f"{type(exc).__name__}") from None


def _s3_entry(path: str, bucket: str, key: str, etag: str, size: int,
              version: object) -> ManifestEntry:
    # wandb keeps an S3 ETag without its quotes, in extra too (an HTTP one with them)
    extra: dict[str, str] = {ETAG_EXTRA_KEY: etag.strip('"')}
    if version and str(version) != "null":
        extra[VERSION_ID_EXTRA_KEY] = str(version)
    return ManifestEntry(path, etag.strip('"'), size, ref=f"s3://{bucket}/{key}", extra=extra)


def _s3_prefix(s3: Any, bucket: str, key: str, name: str | None, max_objects: int,
               base_ref: str) -> list[ManifestEntry]:
    """Every non-empty object under ``key`` taken as a folder (W&B skips empty ones), with
    its latest version id where the bucket is versioned."""
    prefix = key if not key or key.endswith("/") else key + "/"
    versioned = s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    found: list[ManifestEntry] = []
    objects: Any
    if versioned:
        pages = s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket, Prefix=prefix)
        objects = ((o, o.get("VersionId")) for page in pages for o in page.get("Versions", [])
                   if o.get("IsLatest"))
    else:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix)
        objects = ((o, None) for page in pages for o in page.get("Contents", []))
    for obj, version in objects:
        if int(obj.get("Size", 0)) == 0:
            continue
        rel = str(obj["Key"])[len(prefix):]
        if not rel:
            continue
        found.append(_s3_entry(_joined(name, rel), bucket, str(obj["Key"]),
                               str(obj.get("ETag", "")), int(obj["Size"]), version))
        if len(found) > max_objects:
            raise ValueError(f"reference {base_ref!r} holds more than max_objects="
                             f"{max_objects} objects; pass a larger max_objects")
    if not found:
        raise ValueError(f"reference {base_ref!r}: no such object, nor objects under it")
    return found


BUILDERS: dict[str, Builder] = {
    "file": file_entries,
    "http": http_entries,
    "https": http_entries,
    "s3": s3_entries,
}
"""Entry builders by scheme. ``wandb-artifact://`` (another artifact's entry) needs the
registry, so ``Artifact.add_reference`` handles it before it gets here."""
