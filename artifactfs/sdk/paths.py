"""Joining manifest paths onto a local root without ever leaving it."""

from __future__ import annotations

import os
from pathlib import Path

from artifactfs.core.errors import InvalidManifest
from artifactfs.core.manifest import validate_entry_path

__all__ = ["safe_join"]


def safe_join(root: Path, entry_path: str) -> Path:
    """``root / entry_path``, refusing anything that would land outside ``root``.

    The path rules already exclude ``..`` and absolute paths; this also resolves symbolic
    links to folders already under ``root`` (a link ``root/a -> /etc`` must not let
    ``a/passwd`` out).
    Raises InvalidManifest.
    """
    validate_entry_path(entry_path)
    real_root = os.path.realpath(root)
    *folders, name = entry_path.split("/")
    # resolve the folders (a linked folder must not lead out), never the file itself: the
    # file is replaced by a rename, which replaces a link rather than writing through it
    parent = os.path.realpath(os.path.join(real_root, *folders))
    if os.path.commonpath([real_root, parent]) != real_root:
        raise InvalidManifest(f"entry path {entry_path!r} would be written outside {root}")
    return Path(parent, name)
