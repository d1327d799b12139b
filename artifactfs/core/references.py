"""References: manifest entries whose bytes live outside the registry, at a URI.

Pure helpers shared by the SDK (which builds reference entries, ``sdk/references.py``) and the
content layer (which reads them, ``content/references.py``): which scheme a URI has, the URI
with its credentials taken out (what may enter a manifest or a log line), and the name its
verified bytes get in the disk cache.

Credentials never enter a manifest: a manifest is shown to every key holder of its entity,
kept in backups and exported. So a URI loses its ``user:password@`` and every query
parameter that signs or authorizes a request (AWS's ``X-Amz-*``, Google's ``X-Goog-*``,
CloudFront's ``Signature``/``Key-Pair-Id``/``Policy``, Azure SAS's ``sig`` and its fields, and
generic ``token``/``access_token``/``api_key``...). The client that reads a reference later
uses its own configuration for the scheme (boto3's chain for ``s3://``); a presigned HTTP URL
stored without its signature can only be read again where the server allows it unsigned.
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from artifactfs.core.errors import InvalidManifest
from artifactfs.core.limits import shown
from artifactfs.core.manifest import Manifest, ManifestEntry

__all__ = [
    "ETAG_EXTRA_KEY",
    "VERSION_ID_EXTRA_KEY",
    "check_no_credentials",
    "clean_uri",
    "reference_cache_name",
    "scheme_of",
]

ETAG_EXTRA_KEY = "etag"
"""``extra`` key of an http(s) or s3 reference's ETag as the source sent it (quotes kept)."""
VERSION_ID_EXTRA_KEY = "versionID"
"""``extra`` key of an s3 reference's object version (versioned buckets only), W&B's name."""

# query parameters that sign or authorize a request, lower-cased; any parameter starting
# with one of _SIGNED_PREFIXES too
_SIGNED_NAMES = frozenset({
    "signature", "sig", "token", "access_token", "id_token", "refresh_token", "auth",
    "authorization", "api_key", "apikey", "key-pair-id", "policy", "awsaccesskeyid",
    "expires", "password", "passwd", "secret", "client_secret", "credential", "x-api-key",
})
_SIGNED_PREFIXES = ("x-amz-", "x-goog-")
# Azure shared access signatures: only with their "sig" (alone, "sv" or "se" mean nothing)
_AZURE_SAS = frozenset({"sv", "ss", "srt", "sp", "se", "st", "spr", "sr", "si", "skoid",
                        "sktid", "skt", "ske", "sks", "skv", "sdd", "ses", "rscc", "rscd",
                        "rsce", "rscl", "rsct"})


def scheme_of(uri: str) -> str:
    """The lower-cased scheme of ``SCHEME://...``; ValueError when ``uri`` has none."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme or not rest:
        raise ValueError(f"reference {clean_uri(uri)!r} is not a URI of the form SCHEME://...")
    return scheme.lower()


def clean_uri(uri: str) -> str:
    """``uri`` without ``user:password@`` and without the query parameters that carry a
    signature or a secret; everything else (path, other parameters, fragment) kept as it
    was written. What enters a manifest, an error message or a log line."""
    try:
        parts = urlsplit(uri)
    except ValueError:  # a malformed netloc ("http://[x"): say nothing of it
        return "<malformed URI>"
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        names = {k.lower() for k, _ in pairs}
        azure = "sig" in names

        def secret(name: str) -> bool:
            low = name.lower()
            return (low in _SIGNED_NAMES or low.startswith(_SIGNED_PREFIXES)
                    or (azure and low in _AZURE_SAS))

        if any(secret(k) for k, _ in pairs):
            query = urlencode([(k, v) for k, v in pairs if not secret(k)])
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_no_credentials(manifest: Manifest) -> None:
    """Refuse a reference whose URI (or digest, which is the URI for ``checksum=False``)
    holds credentials: a ``user:password@`` or a signed query. A manifest is read by every
    key holder of its entity and kept for ever; ``add_reference`` strips them, and a
    manifest made elsewhere (wandb's, sent as it is) must not bring them in. Raises
    InvalidManifest naming the entry and the URI without its secrets."""
    for entry in manifest:
        if entry.ref is None:
            continue
        for uri in (entry.ref, entry.digest):
            if "://" in uri and clean_uri(uri) != uri:
                raise InvalidManifest(
                    f"entry {shown(entry.path)}: its reference {shown(clean_uri(uri))} holds "
                    "credentials (a user:password, or a signed or keyed query) that a "
                    "manifest must not keep; add it again with add_reference, which leaves "
                    "them out, and give the reader its credentials by the scheme's own "
                    "configuration")


def reference_cache_name(entry: ManifestEntry) -> str:
    """The disk-cache name of a reference's verified bytes: a SHA-256 over the URI and
    what identifies its bytes (digest, ETag, version id), so that a source that changed,
    logged again, never meets the bytes cached for its old version, and two sources with
    an equal ETag (two servers counting from 1) never share a cache file. 64 hex digits:
    no blob's name (32) can be one."""
    extra = entry.extra
    h = hashlib.sha256(b"artifactfs-reference-v1\n")
    for part in (entry.ref or "", entry.digest, str(extra.get(ETAG_EXTRA_KEY, "")),
                 str(extra.get(VERSION_ID_EXTRA_KEY, "")), str(entry.size)):
        h.update(base64.b64encode(part.encode("utf-8", "surrogateescape")) + b"\n")
    return h.hexdigest()
