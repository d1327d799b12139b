"""The schema steps of the stores made before Alembic, kept to adopt such a store.

Until Alembic, the SQLite schema was hand-written SQL and ``PRAGMA user_version`` counted
the steps a store had had (0 to 3: blob access, commit keys, version folders). A store of
any of those ages is brought to schema 3 here, by the very steps that release ran, and then
stamped at the first Alembic revision (``migrations/versions/0001_schema_3.py``), which
creates the same tables in a new database. Frozen: nothing here changes any more; later
schema changes are Alembic revisions.

The steps run on the raw ``sqlite3`` connection, inside the caller's transaction, under the
store's init lock (``store.database``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

from artifactfs.core.digests import blob_key_or_none
from artifactfs.core.manifest import stored_digest_of

__all__ = ["LEGACY_SCHEMA", "SCHEMA_0", "bring_to_schema_3", "stored_blob_keys"]

LEGACY_SCHEMA = 3
"""The last ``PRAGMA user_version`` of the hand-written schema."""

SCHEMA_0 = """
CREATE TABLE IF NOT EXISTS entities (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY, entity_id INTEGER NOT NULL REFERENCES entities(id),
    name TEXT NOT NULL, UNIQUE (entity_id, name));
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY, project_id INTEGER NOT NULL REFERENCES projects(id),
    name TEXT NOT NULL, type TEXT NOT NULL, created_at REAL NOT NULL,
    UNIQUE (project_id, name));
CREATE TABLE IF NOT EXISTS versions (
    id TEXT PRIMARY KEY, collection_id INTEGER NOT NULL REFERENCES collections(id),
    idx INTEGER NOT NULL, state TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
    file_count INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    description TEXT, metadata TEXT NOT NULL DEFAULT '{}', manifest TEXT NOT NULL,
    UNIQUE (collection_id, idx));
CREATE TABLE IF NOT EXISTS aliases (
    collection_id INTEGER NOT NULL REFERENCES collections(id), alias TEXT NOT NULL,
    version_id TEXT NOT NULL REFERENCES versions(id), PRIMARY KEY (collection_id, alias));
CREATE INDEX IF NOT EXISTS aliases_by_version ON aliases (version_id);
CREATE TABLE IF NOT EXISTS api_keys (
    id INTEGER PRIMARY KEY, entity TEXT NOT NULL, key_hash TEXT NOT NULL UNIQUE,
    read_only INTEGER NOT NULL, created_at REAL NOT NULL);
"""
"""Schema 0, as every release before Alembic ran it at each open (hence IF NOT EXISTS)."""


def _add_blob_access(db: sqlite3.Connection) -> None:
    """Schema 1: which entity may reach which blob (hex MD5), filled from every version's
    manifest (deleted ones too: access is never withdrawn), so that an upgraded store gives
    each entity exactly the blobs its versions reference."""
    db.execute(
        "CREATE TABLE blob_access (entity TEXT NOT NULL, blob_key TEXT NOT NULL, "
        "PRIMARY KEY (entity, blob_key)) WITHOUT ROWID"
    )
    rows = db.execute(
        "SELECT e.name, v.manifest FROM versions v JOIN collections c ON c.id = v.collection_id "
        "JOIN projects p ON p.id = c.project_id JOIN entities e ON e.id = p.entity_id"
    ).fetchall()
    for entity, manifest in rows:
        db.executemany(
            "INSERT OR IGNORE INTO blob_access (entity, blob_key) VALUES (?, ?)",
            ((entity, key) for key in stored_blob_keys(manifest)),
        )


def stored_blob_keys(manifest_json: str) -> set[str]:
    """The blobs a stored manifest names (its non-reference entries), read leniently: a row
    this code could not parse must not stop a store from opening."""
    try:
        contents = json.loads(manifest_json).get("contents")
    except (ValueError, AttributeError, RecursionError):
        return set()
    if not isinstance(contents, dict):
        return set()
    keys = set()
    for entry in contents.values():
        key = blob_key_or_none(stored_digest_of(entry))
        if key is not None:
            keys.add(key)
    return keys


def _add_commit_keys(db: sqlite3.Connection) -> None:
    """Schema 2: the key a client gave each commit, so that a commit sent again (a save
    retried after its daemon died, an answer lost on the network) finds the version the
    first one made instead of making a second."""
    db.execute(
        "CREATE TABLE commit_keys (entity TEXT NOT NULL, commit_key TEXT NOT NULL, "
        "version_id TEXT NOT NULL REFERENCES versions(id), created_at REAL NOT NULL, "
        "PRIMARY KEY (entity, commit_key)) WITHOUT ROWID"
    )


def _add_version_folders(db: sqlite3.Connection) -> None:
    """Schema 3: each version's folders, one row each (core/folders.py), so that a mount
    listing one folder of a version of a million files reads that folder alone instead of
    the whole manifest. The versions committed before get theirs when a folder of them is
    first asked for (``MetadataDB.folder_texts``), not here: parsing every manifest of a
    large store would hold the init lock, and every process opening the store, for
    minutes."""
    db.execute(
        "CREATE TABLE version_folders (version_id TEXT NOT NULL REFERENCES versions(id), "
        "path TEXT NOT NULL, listing TEXT NOT NULL, PRIMARY KEY (version_id, path))"
    )


_STEPS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _add_blob_access, _add_commit_keys, _add_version_folders,
)
assert len(_STEPS) == LEGACY_SCHEMA


def bring_to_schema_3(db: sqlite3.Connection) -> int:
    """Run the steps a pre-Alembic store lacks; the ``user_version`` it had.

    The caller holds a write transaction (``BEGIN IMMEDIATE``) and checked that the store's
    ``user_version`` is at most 3 (a larger one is a newer artifactfs's, refused before).
    """
    (done,) = db.execute("PRAGMA user_version").fetchone()
    for statement in SCHEMA_0.split(";"):
        if statement.strip():
            db.execute(statement)  # executescript would commit the caller's transaction
    for step in _STEPS[done:]:
        step(db)
    db.execute(f"PRAGMA user_version = {LEGACY_SCHEMA}")
    return int(done)
