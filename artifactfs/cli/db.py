"""``artifactfs db``: the schema of a store's database (docs/database.md).

An embedded SQLite store upgrades itself when it is opened; a PostgreSQL database is
upgraded only here, on purpose, so that starting one server of a newer release never
changes the schema under the others (they refuse to start on a schema older than theirs,
and name this command).
"""

from __future__ import annotations

from pathlib import Path

import click

from artifactfs.cli.output import fail
from artifactfs.cli.stores import StoreChoice, store_options
from artifactfs.core.errors import ArtifactFSError

__all__ = ["db"]


@click.group()
def db() -> None:
    """Look at or upgrade the schema of a store's database."""


@db.command("upgrade")
@store_options(blobs=False)
def db_upgrade(store_dir: Path | None, db_url: str | None) -> None:
    """Bring the database to this artifactfs's schema (a store made before Alembic too).

    \b
    Safe to run again, and from two hosts at once: each upgrade runs in one transaction,
    one at a time. A schema newer than this artifactfs is refused.
    Examples:
      artifactfs db upgrade --db postgresql://afs@db.internal:5432/artifacts
      artifactfs db upgrade --store /srv/artifacts
    """
    from artifactfs.store.database import (
        create_db_engine,
        make_sqlite_folder,
        shown_url,
        upgrade_database,
    )

    try:
        url = StoreChoice.of(store_dir, db_url).database_url()
        make_sqlite_folder(url)
        engine = create_db_engine(url)
        try:
            before, after = upgrade_database(engine)
        finally:
            engine.dispose()
    except ArtifactFSError as exc:
        fail(str(exc))
    if before == after:
        click.echo(f"{shown_url(url)}: already at {after.describe()}")
    else:
        click.echo(f"{shown_url(url)}: upgraded from {before.describe()} to {after.describe()}")


@db.command("status")
@store_options(blobs=False)
def db_status(store_dir: Path | None, db_url: str | None) -> None:
    """Say which schema the database has and whether it needs `db upgrade`.

    Exit status 0 when it is this artifactfs's schema, 1 otherwise (older, empty, newer, or
    not reachable). Changes nothing.
    """
    from artifactfs.store.database import check_schema, create_db_engine, shown_url

    try:
        url = StoreChoice.of(store_dir, db_url).database_url()
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
            fail(f"{shown_url(url)}: no such database file")
        engine = create_db_engine(url)
        try:
            state, verdict, current = check_schema(engine)
        finally:
            engine.dispose()
    except ArtifactFSError as exc:
        fail(str(exc))
    click.echo(f"{shown_url(url)}: {state.describe()}; {verdict}")
    if not current:
        raise SystemExit(1)

