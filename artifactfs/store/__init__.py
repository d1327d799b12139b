"""A registry's store: metadata in SQLite or PostgreSQL (SQLAlchemy Core, Alembic revisions)
and a content-addressed blob folder."""

from artifactfs.store.blobs import BlobDir
from artifactfs.store.metadata import MetadataDB
from artifactfs.store.store import Store

__all__ = ["BlobDir", "MetadataDB", "Store"]
