"""A registry's store: metadata in SQLite or PostgreSQL (SQLAlchemy Core, Alembic revisions)
and blobs behind one interface (``BlobStore``): a content-addressed folder by default, an S3
bucket (``store.s3``, which loads boto3) at scale.

The names below load on first use: a process that only needs one of them (a client that
imports ``BlobStore`` for typing, say) must not pull in SQLAlchemy, whose import costs 0.15
to 0.35 s a process on this project's machines.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from artifactfs.store.blobs import BlobDir
    from artifactfs.store.blobstore import BlobStore
    from artifactfs.store.metadata import MetadataDB
    from artifactfs.store.store import Store

__all__ = ["BlobDir", "BlobStore", "MetadataDB", "Store"]

_HOMES = {"BlobDir": "artifactfs.store.blobs", "BlobStore": "artifactfs.store.blobstore",
          "MetadataDB": "artifactfs.store.metadata", "Store": "artifactfs.store.store"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
