"""W&B's artifact-to-artifact references: ``wandb-artifact://<HEX>/<path in the target>``.

In W&B, ``<HEX>`` is the target version's server id (base64) decoded to lowercase hex
(``b64_to_hex_id``, docs/wandb-format.md section 5). An artifactfs version id is already
lowercase hex (24 digits, ``MetadataDB.commit_version``; ``artifactfs migrate`` keeps
them), so its hex form is the id itself: ``ref_url`` and ``parse_artifact_ref`` are exact
inverses, and no table maps one to the other. An id of a W&B server (a reference in a
manifest imported from W&B) parses as well; it names no version here, so reading it is
NotFound, said as such.

The path is written as it is, not percent-quoted, as wandb's ``ref_url`` does; a parser
takes everything after the id's slash as the path. Pure: no I/O.
"""

from __future__ import annotations

import re

from artifactfs.core.errors import InvalidManifest
from artifactfs.core.limits import shown
from artifactfs.core.manifest import validate_entry_path

__all__ = [
    "ARTIFACT_SCHEME",
    "MAX_CHAIN",
    "UnresolvedReference",
    "artifact_ref_url",
    "is_artifact_ref",
    "parse_artifact_ref",
]

ARTIFACT_SCHEME = "wandb-artifact"
_PREFIX = ARTIFACT_SCHEME + "://"
# W&B's ids decode to a few dozen bytes; ours are 12: bounded so a ref cannot name a
# "version id" of kilobytes that every lookup then carries
_HEX_RE = re.compile(r"[0-9a-f]{2,128}")
MAX_CHAIN = 16
"""Most ``wandb-artifact://`` hops followed from a reference to a concrete entry: W&B
stores refs to concrete entries already, so a longer chain is a loop or an abuse."""


class UnresolvedReference(InvalidManifest):
    """A ``wandb-artifact://`` reference whose target cannot be read: its version is
    deleted, missing or not readable with this key, or it has no such entry. An
    InvalidManifest, so the mount answers EIO with a log line, the CLI one line, and a
    server 400 to a commit that names one."""


def is_artifact_ref(ref: str | None) -> bool:
    """Whether ``ref`` (an entry's ``ref``) is a ``wandb-artifact://`` reference."""
    return ref is not None and ref[: len(_PREFIX)].lower() == _PREFIX


def artifact_ref_url(version_id: str, path: str) -> str:
    """``wandb-artifact://<hex of version_id>/<path>``: W&B's ``entry.ref_url()``."""
    hex_id = version_id.lower()
    if not _HEX_RE.fullmatch(hex_id):
        raise InvalidManifest(f"version id {shown(version_id)} has no hex form")
    return f"{_PREFIX}{hex_id}/{validate_entry_path(path)}"


def parse_artifact_ref(ref: str) -> tuple[str, str]:
    """``(version id, path)`` of a ``wandb-artifact://`` URI; raises InvalidManifest
    saying what is wrong with one that is not of that form."""
    if not is_artifact_ref(ref):
        raise InvalidManifest(f"{shown(ref)} is not a {_PREFIX}<id>/<path> reference")
    hex_id, slash, path = ref[len(_PREFIX):].partition("/")
    hex_id = hex_id.lower()
    if not slash or not _HEX_RE.fullmatch(hex_id) or len(hex_id) % 2:
        raise InvalidManifest(
            f"reference {shown(ref)} does not name a version: {_PREFIX}<HEX>/<path>, with "
            "HEX the version's id in lowercase hex")
    try:
        return hex_id, validate_entry_path(path)
    except InvalidManifest as exc:
        raise InvalidManifest(f"reference {shown(ref)} names no usable path: {exc}") from None
