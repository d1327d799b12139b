"""The registry's HTTP protocol as plain functions: ranges, error bodies, blob paths.

Both the server and the HTTP client use these, so the two ends agree by construction.
"""

from __future__ import annotations

import json
import re
from typing import Any

from artifactfs.core.artifact_refs import UnresolvedReference
from artifactfs.core.errors import (
    ArtifactFSError,
    Conflict,
    DigestMismatch,
    InvalidManifest,
    InvalidName,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RegistryUnavailable,
)

__all__ = [
    "API_PREFIX",
    "BATCH_MAX_BLOBS",
    "BATCH_MAX_BYTES",
    "RangeNotSatisfiable",
    "batch_body",
    "error_body",
    "error_from_response",
    "parse_range",
    "split_batch",
    "status_for",
]

API_PREFIX = "/api/v1"

# ``POST /blobs/batch``: whole small blobs in one answer, so a reader going through a
# folder of small files pays one request per batch instead of one per file.
BATCH_MAX_BLOBS = 256
BATCH_MAX_BYTES = 16 << 20

_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII)
# any position with more digits than this lies past every resource (2**63 has 19): such a
# number is read as this cap instead of being converted, which for thousands of digits
# Python refuses (int() stops at 4,300) and which would cost time for nothing
_MAX_POSITION_DIGITS = 20
_PAST_EVERY_RESOURCE = 10**_MAX_POSITION_DIGITS

_BY_NAME: dict[str, type[ArtifactFSError]] = {
    cls.__name__: cls
    for cls in (
        Conflict, DigestMismatch, InvalidManifest, InvalidName, InvalidRequest, NotFound,
        PermissionDenied, RegistryUnavailable,
        UnresolvedReference,  # (an InvalidManifest) a wandb-artifact:// target not readable
    )
}
_STATUS: dict[type[ArtifactFSError], int] = {
    InvalidName: 400,
    InvalidManifest: 400,
    InvalidRequest: 400,
    DigestMismatch: 400,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    RegistryUnavailable: 503,
}


class RangeNotSatisfiable(ValueError):
    """The Range header is well formed but lies outside the resource of ``size`` bytes."""

    def __init__(self, header: str, size: int) -> None:
        super().__init__(header)
        self.size = size


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` a single-range ``Range`` header asks for, or None for the whole.

    A header that is not a single ``bytes=`` range is ignored (the whole resource is sent, as
    RFC 9110 allows); one outside the resource raises RangeNotSatisfiable (416). Positions
    of any length are accepted: one past every resource is treated as such, never converted
    digit by digit.
    """
    if not header:
        return None
    m = _RANGE_RE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = _position(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header, size)
        return max(0, size - n), size
    start = _position(first)
    if last and _position(last) < start:
        return None  # invalid, so ignored
    if start >= size:
        raise RangeNotSatisfiable(header, size)
    end = size if not last else _position(last) + 1
    return start, min(end, size)


def _position(digits: str) -> int:
    """A range position; one too long to matter is capped past every resource."""
    digits = digits.lstrip("0") or "0"
    return _PAST_EVERY_RESOURCE if len(digits) > _MAX_POSITION_DIGITS else int(digits)


def status_for(exc: ArtifactFSError) -> int:
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return 400


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}}


def error_from_response(status: int, body: Any) -> ArtifactFSError:
    """The exception a client raises for an error response."""
    message, kind = f"registry answered HTTP {status}", ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = str(body["error"].get("message") or message)
        kind = str(body["error"].get("type") or "")
    cls = _BY_NAME.get(kind)
    if cls is None:
        if status == 404:
            cls = NotFound
        elif status in (401, 403):
            cls = PermissionDenied
        elif status == 409:
            cls = Conflict
        elif status >= 500:
            cls = RegistryUnavailable
        else:
            cls = InvalidName
    if status == 401:
        message += "; set ARTIFACTFS_API_KEY to a key from 'artifactfs key create ENTITY'"
    return cls(message)


def batch_body(parts: list[bytes | None]) -> list[bytes]:
    """The pieces of a batch answer: a JSON line of sizes (-1: no such blob), then the bytes
    of each blob in the order asked, back to back."""
    sizes = [-1 if p is None else len(p) for p in parts]
    head = json.dumps({"sizes": sizes}, separators=(",", ":")).encode() + b"\n"
    return [head, *(p for p in parts if p)]


def split_batch(body: bytes | bytearray | memoryview, count: int) -> list[memoryview | None]:
    """Parse a batch answer for ``count`` blobs; raises ValueError when it is malformed."""
    view = memoryview(body)
    end = bytes(view[:4096]).find(b"\n")
    if end < 0:
        raise ValueError("batch answer has no header line")
    head = json.loads(bytes(view[:end]))
    sizes = head.get("sizes") if isinstance(head, dict) else None
    if (not isinstance(sizes, list) or len(sizes) != count
            or not all(isinstance(n, int) and n >= -1 for n in sizes)):
        raise ValueError("batch answer header does not match the request")
    out: list[memoryview | None] = []
    pos = end + 1
    for n in sizes:
        if n < 0:
            out.append(None)
            continue
        if pos + n > len(view):
            raise ValueError("batch answer is shorter than its header says")
        out.append(view[pos : pos + n])
        pos += n
    if pos != len(view):
        raise ValueError("batch answer is longer than its header says")
    return out
