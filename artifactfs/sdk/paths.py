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
    links already under ``root`` (a link ``root/a -> /etc`` must not let ``a/passwd`` out).
    Raises InvalidManifest.
    """
    validate_entry_path(entry_path)
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, *entry_path.split("/")))
    if os.path.commonpath([real_root, target]) != real_root or target == real_root:
        raise InvalidManifest(f"entry path {entry_path!r} would be written outside {root}")
    return Path(target)
