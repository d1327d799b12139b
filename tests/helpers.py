"""Small helpers the tests of every layer share."""

from __future__ import annotations

import sys
from pathlib import Path

ARTIFACTFS = str(Path(sys.executable).with_name("artifactfs"))


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``{relative path: bytes}`` under ``root``; return ``root``."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
