"""Runs and lineage: the ``runs`` table and the ``run_links`` a run has to the versions it
logged and used (issue 19; core/runs.py).

Two new tables and nothing else changed, so a store upgraded to it reads and writes its
artifacts as before. On SQLite it also sets ``PRAGMA user_version = 4``, as
docs/database.md asks of the first revision after 0001: an artifactfs from before Alembic,
which knows only ``user_version``, then refuses the store instead of writing to it.
Frozen: later changes are new revisions.

Revision ID: 0002_runs
Revises: 0001_schema_3
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_runs"
down_revision: str | None = "0001_schema_3"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("job_type", sa.Text),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double),
    )
    op.create_index("runs_by_project", "runs", ["entity", "project"])
    op.create_table(
        "run_links",
        sa.Column("run_id", sa.Text, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("version_id", sa.Text, sa.ForeignKey("versions.id"), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "kind", "version_id"),
    )
    op.create_index("run_links_by_version", "run_links", ["version_id", "kind"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA user_version = 4")


def downgrade() -> None:
    raise NotImplementedError("artifactfs upgrades only; restore a backup to go back")
