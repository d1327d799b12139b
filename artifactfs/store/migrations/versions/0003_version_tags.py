"""W&B's tags of a version: the ``version_tags`` table (``Artifact.tags``).

One new table and nothing else changed, so a store upgraded to it reads and writes its
artifacts as before. On SQLite it sets ``PRAGMA user_version = 5``, as each revision after
0001 does (docs/database.md). Frozen: later changes are new revisions.

Revision ID: 0003_version_tags
Revises: 0002_runs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_version_tags"
down_revision: str | None = "0002_runs"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "version_tags",
        sa.Column("version_id", sa.Text, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("tag", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("version_id", "tag"),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA user_version = 5")


def downgrade() -> None:
    raise NotImplementedError("artifactfs upgrades only; restore a backup to go back")
