"""What an artifact keeps of a POSIX file beyond its bytes: the executable bit and symlinks.

Both live in the entry's ``extra`` (W&B keeps and ignores unknown keys there), so a manifest
stays readable by any W&B client::

    "run.sh":   {"digest": "...", "size": 120, "extra": {"mode": "0755"}}
    "latest":   {"digest": md5_b64(b"v2"), "size": 0, "extra": {"symlink": "v2"}}

- ``mode`` is written only for executable files, always as ``"0755"``: like git, an artifact
  keeps whether a file is executable, not its exact permission bits (those depend on the
  umask of whoever made it). No ``mode`` means an ordinary file.
- A symlink has no blob: its size is 0 and its digest the MD5 of the target text, so that
  the artifact digest (paths and digests only) changes when a target does.
- A symlink's target must stay inside the artifact wherever it is followed from: relative,
  a run of leading ``..`` and then only plain names, and never more ``..`` than the link's
  own folder is deep. ``a/l -> ../b/c`` is kept; ``/etc``, ``../..`` from the top, and
  ``x/../..`` (which would climb out through a linked ``x``) are refused. A link moved to a
  shallower folder may break this, so it is checked again at save and at download.
"""

from __future__ import annotations

from typing import Any

from artifactfs.core.digests import md5_b64
from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import ManifestEntry

__all__ = [
    "EXECUTABLE",
    "MAX_TARGET_BYTES",
    "MODE_EXTRA_KEY",
    "SYMLINK_EXTRA_KEY",
    "check_symlink_entry",
    "is_executable",
    "link_escape",
    "symlink_entry",
    "symlink_target",
    "with_executable",
]

MODE_EXTRA_KEY = "mode"
SYMLINK_EXTRA_KEY = "symlink"
EXECUTABLE = "0755"
MAX_TARGET_BYTES = 4095  # PATH_MAX less the NUL: the longest target the kernel passes on


def symlink_target(entry: ManifestEntry | None) -> str | None:
    """The target of a symlink entry; None for a file (or nothing)."""
    if entry is None or not entry.extra:
        return None
    target = entry.extra.get(SYMLINK_EXTRA_KEY)
    return target if isinstance(target, str) else None


def is_executable(entry: ManifestEntry | None) -> bool:
    """True when the entry is a file saved with its executable bit."""
    if entry is None or not entry.extra:
        return False
    mode = entry.extra.get(MODE_EXTRA_KEY)
    if not isinstance(mode, str):
        return False
    try:
        return bool(int(mode, 8) & 0o111)
    except ValueError:
        return False


def with_executable(extra: dict[str, Any], executable: bool) -> dict[str, Any]:
    """``extra`` with the executable mark set or cleared (a new dict)."""
    out = {k: v for k, v in extra.items() if k != MODE_EXTRA_KEY}
    if executable:
        out[MODE_EXTRA_KEY] = EXECUTABLE
    return out


def link_escape(path: str, target: str) -> str | None:
    """Why a symlink at ``path`` to ``target`` could lead out of its artifact; None if not."""
    if not target:
        return "the target is empty"
    if len(target.encode("utf-8", "surrogateescape")) > MAX_TARGET_BYTES:
        return f"the target is longer than {MAX_TARGET_BYTES} bytes"
    if "\x00" in target:
        return "the target contains a NUL byte"
    if target.startswith("/"):
        return "the target is absolute"
    parts = [p for p in target.split("/") if p not in ("", ".")]
    ups = 0
    while ups < len(parts) and parts[ups] == "..":
        ups += 1
    if ".." in parts[ups:]:
        return "'..' after a name could climb out through a linked folder"
    depth = path.count("/")  # how many folders the link is inside
    if ups > depth:
        return "the target is above the top of the artifact"
    return None


def symlink_entry(path: str, target: str) -> ManifestEntry:
    """The manifest entry of a symlink (no blob: size 0, digest of the target text)."""
    return ManifestEntry(
        path, md5_b64(target.encode("utf-8", "surrogateescape")), 0,
        extra={SYMLINK_EXTRA_KEY: target},
    )


def check_symlink_entry(entry: ManifestEntry) -> None:
    """Refuse a symlink entry whose shape or target is wrong; raises InvalidManifest."""
    target = symlink_target(entry)
    if target is None:
        raise InvalidManifest(f"entry {entry.path!r}: 'symlink' in extra must be a string")
    reason = link_escape(entry.path, target)
    if reason is not None:
        raise InvalidManifest(
            f"symlink {entry.path!r} -> {target!r} may not be kept: {reason}; a link must "
            "stay inside the artifact"
        )
    if entry.ref is not None or entry.size != 0 or entry.digest != symlink_entry(
        entry.path, target
    ).digest:
        raise InvalidManifest(
            f"symlink {entry.path!r} must have size 0, no ref and the MD5 of its target as "
            "its digest"
        )
