"""Alembic's environment for artifactfs: run on the connection that ``store.database``
hands over in ``config.attributes["connection"]``, never from an alembic.ini or a URL.

The caller holds the connection (and, on SQLite, the store's init lock), so that adopting an
old store, upgrading and stamping happen where it decides; this file only runs the
revisions in one transaction.
"""

from __future__ import annotations

from alembic import context

from artifactfs.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place: later revisions use batch operations
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
