"""The store's tables, one SQLAlchemy Core definition for SQLite and PostgreSQL.

This is the schema the code of this release reads and writes (``metadata.py`` builds its
queries from these objects). The database gets it from the Alembic revisions in
``migrations/versions``, never from ``create_all``: a revision is a frozen step that a
store of any age can take, while this module moves with the code. A test
(tests/test_store_schema.py) compares a database upgraded to the head revision with this
definition on both engines, so the two cannot drift apart unnoticed.

Types are chosen to mean the same on both engines: ``Double`` for the ``REAL`` timestamps,
``BigInteger`` for byte counts and version numbers (SQLite's INTEGER is 64-bit already;
PostgreSQL's is not), and ``Integer`` for the surrogate keys so that SQLite keeps them as
its rowid (``INTEGER PRIMARY KEY``; a BIGINT key would not be one). The two tables that are
looked up only by their whole primary key are ``WITHOUT ROWID`` on SQLite, as the
hand-written schema made them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "HEAD_REVISION",
    "aliases",
    "api_keys",
    "blob_access",
    "collections",
    "commit_keys",
    "entities",
    "metadata",
    "projects",
    "run_links",
    "runs",
    "version_folders",
    "version_tags",
    "versions",
]

HEAD_REVISION = "0003_version_tags"
"""The Alembic revision these tables are, so that opening a current store needs no Alembic
(importing it and reading its scripts cost about 100 ms a process). A test checks that it
is the head of ``migrations/versions``."""

metadata = MetaData()

entities = Table(
    "entities", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False, unique=True),
)

projects = Table(
    "projects", metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_id", Integer, ForeignKey("entities.id"), nullable=False),
    Column("name", Text, nullable=False),
    UniqueConstraint("entity_id", "name"),
)

collections = Table(
    "collections", metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("project_id", "name"),
)

versions = Table(
    "versions", metadata,
    Column("id", Text, primary_key=True),
    Column("collection_id", Integer, ForeignKey("collections.id"), nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("state", Text, nullable=False),
    Column("digest", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("file_count", BigInteger, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("description", Text),
    Column("metadata", Text, nullable=False, server_default="{}"),
    Column("manifest", Text, nullable=False),
    UniqueConstraint("collection_id", "idx"),
)

version_tags = Table(
    "version_tags", metadata,
    Column("version_id", Text, ForeignKey("versions.id"), nullable=False),
    Column("tag", Text, nullable=False),
    Column("position", Integer, nullable=False),  # tags come back in the order set
    PrimaryKeyConstraint("version_id", "tag"),
)
"""W&B's tags of a version (core/limits.py ``check_tags``): free labels, unlike aliases
neither unique in a collection nor used to name a version."""

aliases = Table(
    "aliases", metadata,
    Column("collection_id", Integer, ForeignKey("collections.id"), nullable=False),
    Column("alias", Text, nullable=False),
    Column("version_id", Text, ForeignKey("versions.id"), nullable=False),
    PrimaryKeyConstraint("collection_id", "alias"),
    Index("aliases_by_version", "version_id"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("entity", Text, nullable=False),
    Column("key_hash", Text, nullable=False, unique=True),
    Column("read_only", Integer, nullable=False),
    Column("created_at", Double, nullable=False),
)

blob_access = Table(
    "blob_access", metadata,
    Column("entity", Text, nullable=False),
    Column("blob_key", Text, nullable=False),
    PrimaryKeyConstraint("entity", "blob_key"),
    sqlite_with_rowid=False,
)

commit_keys = Table(
    "commit_keys", metadata,
    Column("entity", Text, nullable=False),
    Column("commit_key", Text, nullable=False),
    Column("version_id", Text, ForeignKey("versions.id"), nullable=False),
    Column("created_at", Double, nullable=False),
    PrimaryKeyConstraint("entity", "commit_key"),
    sqlite_with_rowid=False,
)

version_folders = Table(
    "version_folders", metadata,
    Column("version_id", Text, ForeignKey("versions.id"), nullable=False),
    Column("path", Text, nullable=False),
    Column("listing", Text, nullable=False),
    PrimaryKeyConstraint("version_id", "path"),
)

runs = Table(
    "runs", metadata,
    Column("id", Text, primary_key=True),
    Column("entity", Text, nullable=False),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("job_type", Text),
    Column("state", Text, nullable=False),
    Column("config", Text, nullable=False, server_default="{}"),
    Column("created_at", Double, nullable=False),
    Column("finished_at", Double),
    Index("runs_by_project", "entity", "project"),
)
"""Runs (core/runs.py). The entity is a name, as in ``api_keys``: a run may start before its
entity has any artifact (the ``entities`` row is made by a first commit)."""

run_links = Table(
    "run_links", metadata,
    Column("run_id", Text, ForeignKey("runs.id"), nullable=False),
    Column("kind", Text, nullable=False),
    Column("version_id", Text, ForeignKey("versions.id"), nullable=False),
    Column("created_at", Double, nullable=False),
    PrimaryKeyConstraint("run_id", "kind", "version_id"),
    Index("run_links_by_version", "version_id", "kind"),
)
"""A run logged (made) or used (read) a version: the lineage. The key makes a link once
however often it is recorded (a mount records a use at every start)."""
