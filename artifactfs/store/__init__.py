"""A registry's store: metadata in SQLite or PostgreSQL (SQLAlchemy Core, Alembic revisions)
and a content-addressed blob folder.

The names below load on first use: ``store.files`` (imported by the cache, the fs layer and
the SDK, server or not) must not pull in SQLAlchemy, whose import costs 0.15 to 0.35 s a
process on this project's machines.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from artifactfs.store.blobs import BlobDir
    from artifactfs.store.metadata import MetadataDB
    from artifactfs.store.store import Store

__all__ = ["BlobDir", "MetadataDB", "Store"]

_HOMES = {"BlobDir": "artifactfs.store.blobs", "MetadataDB": "artifactfs.store.metadata",
          "Store": "artifactfs.store.store"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
