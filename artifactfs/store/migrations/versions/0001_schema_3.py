"""Schema 3: the tables of the last hand-written schema (``PRAGMA user_version`` 3).

A new database gets them here. A store made before Alembic is first brought to schema 3 by
its own steps (``store/legacy.py``) and then stamped at this revision, so both reach the
same place. Frozen: later changes are new revisions, never edits of this one.

Revision ID: 0001_schema_3
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_schema_3"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "entities",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entity_id", sa.Integer, sa.ForeignKey("entities.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.UniqueConstraint("entity_id", "name"),
    )
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("idx", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("digest", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("file_count", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("metadata", sa.Text, nullable=False, server_default="{}"),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.UniqueConstraint("collection_id", "idx"),
    )
    op.create_table(
        "aliases",
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id"),
                  nullable=False),
        sa.Column("alias", sa.Text, nullable=False),
        sa.Column("version_id", sa.Text, sa.ForeignKey("versions.id"), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "alias"),
    )
    op.create_index("aliases_by_version", "aliases", ["version_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("key_hash", sa.Text, nullable=False, unique=True),
        sa.Column("read_only", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "blob_access",
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("blob_key", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("entity", "blob_key"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "commit_keys",
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("commit_key", sa.Text, nullable=False),
        sa.Column("version_id", sa.Text, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("entity", "commit_key"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "version_folders",
        sa.Column("version_id", sa.Text, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("listing", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("version_id", "path"),
    )
    if op.get_bind().dialect.name == "sqlite":
        # what an artifactfs from before Alembic reads: it opens this store as its own
        # schema 3 instead of trying to make the tables again
        op.execute("PRAGMA user_version = 3")


def downgrade() -> None:
    raise NotImplementedError("artifactfs upgrades only; restore a backup to go back")
