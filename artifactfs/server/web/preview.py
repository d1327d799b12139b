"""What the web view shows of a file: pure functions from verified bytes to a preview.

Nothing stored is ever rendered as markup: HTML and SVG are shown as text (escaped by the
templates), and an image is shown only when its first bytes say PNG, JPEG, GIF or WebP,
whatever its name says; it is then served with that type and ``nosniff``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from artifactfs.core.digests import XXH128, md5_b64, xxh128_b64
from artifactfs.core.manifest import ManifestEntry

__all__ = ["PREVIEW_BYTES", "Preview", "image_type", "make_preview", "verified"]

PREVIEW_BYTES = 2 << 20
"""Largest file previewed: it is read whole and checked against its digest before a byte
is shown, on a page that should come back in well under a second."""
TEXT_CHARS = 200_000
"""Characters of text (or pretty JSON) shown; a longer file is cut, and says so."""
CSV_ROWS = 50
"""Rows of a CSV table shown, the header included."""

_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(data: bytes) -> str | None:
    """The raster image type the bytes themselves announce, or None (SVG is never one)."""
    for magic, kind in _IMAGES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def verified(entry: ManifestEntry, data: bytes) -> bool:
    """``data`` is the entry's bytes: its size, the MD5 its blob is stored under and, for an
    XXH128 entry, the digest the manifest gives (as the content layer checks them)."""
    return (
        len(data) == entry.size
        and md5_b64(data) == entry.stored_digest
        and (entry.algorithm != XXH128 or xxh128_b64(data) == entry.digest)
    )


@dataclass
class Preview:
    """One of: ``text`` (also pretty JSON), ``table`` (CSV rows), ``image`` (served raw),
    or ``none`` with ``note`` saying why nothing is shown."""

    kind: str
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)
    truncated: bool = False
    note: str = ""


def _text(data: bytes) -> str | None:
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _cut(text: str) -> tuple[str, bool]:
    return (text[:TEXT_CHARS], True) if len(text) > TEXT_CHARS else (text, False)


def make_preview(path: str, data: bytes) -> Preview:
    """The preview of the verified bytes of the file at ``path``."""
    image = image_type(data)
    if image is not None:
        return Preview("image", note=image)
    text = _text(data)
    if text is None:
        return Preview("none", note="binary file: no preview")
    lower = path.lower()
    if lower.endswith((".csv", ".tsv")):
        reader = csv.reader(io.StringIO(text), delimiter="\t" if lower.endswith(".tsv") else ",")
        rows: list[list[str]] = []
        try:
            for row in reader:
                if len(rows) == CSV_ROWS:
                    return Preview("table", rows=rows, truncated=True)
                rows.append(row)
        except csv.Error:
            pass  # not CSV after all: shown as text below
        else:
            return Preview("table", rows=rows)
    if lower.endswith(".json"):
        try:
            shown, cut = _cut(json.dumps(json.loads(text), indent=2, ensure_ascii=False))
            return Preview("text", text=shown, truncated=cut, note="JSON")
        except (ValueError, RecursionError):
            pass  # shown as the text it is
    shown, cut = _cut(text)
    return Preview("text", text=shown, truncated=cut)
