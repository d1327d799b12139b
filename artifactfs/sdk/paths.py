"""Joining manifest paths onto a local root without ever leaving it."""

from __future__ import annotations

import os
from pathlib import Path

from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import validate_entry_path

__all__ = ["safe_join"]


def safe_join(root: Path, entry_path: str) -> Path:
    """``root / entry_path``, refusing anything that would land outside ``root``.

    The path rules already exclude ``..`` and absolute paths; this also refuses a symbolic
    link to a folder on the way (a link ``root/a -> /etc`` must not let ``a/passwd`` out, and
    ``root/x -> y`` must not send ``x/f`` and ``y/f`` to one file).
    Raises InvalidManifest.
    """
    validate_entry_path(entry_path)
    real_root = os.path.realpath(root)
    *folders, name = entry_path.split("/")
    # resolve the folders (a linked folder must not lead out), never the file itself: the
    # file is replaced by a rename, which replaces a link rather than writing through it
    expected = os.path.join(real_root, *folders)
    parent = os.path.realpath(expected)
    if parent != expected:
        raise InvalidManifest(
            f"entry path {entry_path!r}: a folder on the way under {root} is a symbolic link; "
            "downloads do not follow links (remove it, or download to an empty folder)"
        )
    return Path(parent, name)
