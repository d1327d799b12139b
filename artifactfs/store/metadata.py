"""The store's metadata in SQLite: entities, projects, collections, versions and aliases.

Concurrency rules (several processes may share one store):

- WAL mode and a generous busy timeout, so readers never block writers and writers queue.
- Every change runs in one ``BEGIN IMMEDIATE`` transaction, which takes the write lock
  before reading what it will change: the next version number is computed and used under the
  same lock, so two writers can never both take ``vN``.
- A version row is inserted already COMMITTED, with its manifest, in the transaction that
  moves ``latest`` and the other aliases: a crash before the commit leaves nothing visible.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from artifactfs.core.digests import blob_key_or_none
from artifactfs.core.errors import ArtifactFSError, Conflict, InvalidName, NotFound
from artifactfs.core.folders import folder_rows
from artifactfs.core.limits import (
    MAX_SIZE,
    UNREADABLE_KEY,
    check_description,
    check_metadata,
    load_stored_json,
    shown,
)
from artifactfs.core.manifest import Manifest
from artifactfs.core.names import LATEST, parse_version_label, validate_alias
from artifactfs.core.records import COMMITTED, DELETED, CollectionInfo, VersionInfo

__all__ = ["MetadataDB"]

log = logging.getLogger(__name__)

_SCHEMA = """
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
    )
    for entity, manifest in rows:
        db.executemany(
            "INSERT OR IGNORE INTO blob_access (entity, blob_key) VALUES (?, ?)",
            ((entity, key) for key in _stored_blob_keys(manifest)),
        )


def _stored_blob_keys(manifest_json: str) -> set[str]:
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
        if isinstance(entry, dict) and entry.get("ref") is None:
            key = blob_key_or_none(entry.get("digest"))
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
    the whole manifest. A commit writes its version's rows in its own transaction; the
    versions an older artifactfs committed get theirs when a folder of them is first asked
    for (``folder_texts``), not here: parsing every manifest of a large store would hold
    the init lock, and every process opening the store, for minutes."""
    db.execute(
        "CREATE TABLE version_folders (version_id TEXT NOT NULL REFERENCES versions(id), "
        "path TEXT NOT NULL, listing TEXT NOT NULL, PRIMARY KEY (version_id, path))"
    )


_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _add_blob_access, _add_commit_keys, _add_version_folders,
)
"""Schema changes in order; ``PRAGMA user_version`` counts those a store has had. Each runs
once, in one transaction with its new number, under the init lock. Append, never edit."""

# a query names at most this many blobs (SQLite before 3.32 allows 999 parameters)
_IN_BATCH = 500


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to this code's; refuse one that a newer artifactfs wrote (its
    rows may mean what this code cannot keep: writing them could lose, say, blob access)."""
    (done,) = conn.execute("PRAGMA user_version").fetchone()
    if done > len(_MIGRATIONS):
        raise ArtifactFSError(
            f"this store has schema {done}, newer than this artifactfs knows "
            f"({len(_MIGRATIONS)}); upgrade artifactfs to use it"
        )
    if done == len(_MIGRATIONS):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for step in _MIGRATIONS[done:]:
            step(conn)
        conn.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _key_hash(key: str) -> str:
    # keys are 256 random bits, so a plain SHA-256 is enough (no salt or stretching needed)
    return hashlib.sha256(key.encode()).hexdigest()


_VERSION_SELECT = """
SELECT v.id, e.name, p.name, c.name, c.type, v.idx, v.state, v.digest, v.size, v.file_count,
       v.created_at, v.updated_at, v.description, v.metadata, c.id
FROM versions v JOIN collections c ON c.id = v.collection_id
JOIN projects p ON p.id = c.project_id JOIN entities e ON e.id = p.entity_id
"""


def _stored_metadata(version_id: str, text: str) -> dict[str, Any]:
    """A version's metadata as stored, or a marker saying why it can not be shown.

    Rows written before metadata was bounded (core.limits) may hold values nested too deep
    to decode or encode again, NaN, or unpaired surrogates; one such row must not make every
    read of its collection fail, so its metadata reads as ``{UNREADABLE_KEY: reason}``.
    """
    try:
        value = load_stored_json(text)
    except ValueError as exc:
        log.warning("version %s: stored metadata is unreadable (%s); shown as a marker",
                    version_id, exc)
        return {UNREADABLE_KEY: f"the stored metadata is unreadable: {exc}; replace it"}
    if not isinstance(value, dict):
        log.warning("version %s: stored metadata is not an object; shown as a marker",
                    version_id)
        return {UNREADABLE_KEY: "the stored metadata is not a JSON object; replace it"}
    return value


def _lenient_text(raw: bytes) -> str:
    """A TEXT value as read back. What this code writes is always UTF-8; a damaged or
    hand-edited row may not be, and decoding it strictly failed every read of that row (and
    of its collection): its bad bytes read as U+FFFD instead."""
    return raw.decode("utf-8", "replace")


class MetadataDB:
    """SQLite access; one connection per thread (sqlite3 objects may not cross threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        # several processes may open a new store at once: switching to WAL and creating the
        # schema take locks SQLite does not wait for, so do them one process at a time
        with open(path.with_name(path.name + ".init.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._conn().executescript(_SCHEMA)
            _migrate(self._conn())

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            conn.text_factory = _lenient_text
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ---- reading -------------------------------------------------------------------------

    def list_entities(self) -> list[str]:
        rows = self._conn().execute("SELECT name FROM entities ORDER BY name")
        return [r[0] for r in rows]

    def list_projects(self, entity: str) -> list[str]:
        rows = self._conn().execute(
            "SELECT p.name FROM projects p JOIN entities e ON e.id = p.entity_id "
            "WHERE e.name = ? ORDER BY p.name",
            (entity,),
        )
        return [r[0] for r in rows]

    def list_collections(
        self, entity: str, project: str, type_: str | None = None
    ) -> list[CollectionInfo]:
        sql = (
            "SELECT c.name, c.type, c.created_at, "
            "(SELECT count(*) FROM versions v WHERE v.collection_id = c.id AND v.state = ?) "
            "FROM collections c JOIN projects p ON p.id = c.project_id "
            "JOIN entities e ON e.id = p.entity_id WHERE e.name = ? AND p.name = ?"
        )
        args: list[Any] = [COMMITTED, entity, project]
        if type_ is not None:
            sql += " AND c.type = ?"
            args.append(type_)
        rows = self._conn().execute(sql + " ORDER BY c.name", args)
        return [CollectionInfo(entity, project, n, t, ts, count) for n, t, ts, count in rows]

    def list_types(self, entity: str, project: str) -> list[str]:
        return sorted({c.type for c in self.list_collections(entity, project)})

    def list_versions(self, entity: str, project: str, name: str) -> list[VersionInfo]:
        rows = self._conn().execute(
            _VERSION_SELECT + "WHERE e.name = ? AND p.name = ? AND c.name = ? AND v.state = ? "
            "ORDER BY v.idx",
            (entity, project, name, COMMITTED),
        ).fetchall()
        return self._with_aliases(rows)

    def collection_type(self, entity: str, project: str, name: str) -> str | None:
        row = self._conn().execute(
            "SELECT c.type FROM collections c JOIN projects p ON p.id = c.project_id "
            "JOIN entities e ON e.id = p.entity_id WHERE e.name = ? AND p.name = ? "
            "AND c.name = ?",
            (entity, project, name),
        ).fetchone()
        return row[0] if row else None

    def resolve(self, entity: str, project: str, name: str, alias: str) -> VersionInfo:
        """The committed version ``alias`` (or ``vN``) names; raises NotFound saying what."""
        index = parse_version_label(alias)
        if index is not None and index > MAX_SIZE:  # no SQLite INTEGER holds it
            raise NotFound(f"artifact {entity}/{project}/{name}:{alias} not found")
        where = "WHERE e.name = ? AND p.name = ? AND c.name = ? AND v.state = ? AND "
        if index is not None:
            sql = _VERSION_SELECT + where + "v.idx = ?"
            args: tuple[Any, ...] = (entity, project, name, COMMITTED, index)
        else:
            sql = (
                _VERSION_SELECT
                + "JOIN aliases a ON a.version_id = v.id AND a.collection_id = c.id "
                + where
                + "a.alias = ?"
            )
            args = (entity, project, name, COMMITTED, alias)
        rows = self._conn().execute(sql, args).fetchall()
        if not rows:
            raise NotFound(f"artifact {entity}/{project}/{name}:{alias} not found")
        return self._with_aliases(rows)[0]

    def version_by_id(self, version_id: str, *, include_deleted: bool = False) -> VersionInfo:
        rows = self._conn().execute(_VERSION_SELECT + "WHERE v.id = ?", (version_id,)).fetchall()
        if not rows or (rows[0][6] == DELETED and not include_deleted):
            raise NotFound(f"artifact version with id {version_id!r} not found")
        return self._with_aliases(rows)[0]

    def manifest_json(self, version_id: str) -> str:
        row = self._conn().execute(
            "SELECT manifest FROM versions WHERE id = ? AND state = ?", (version_id, COMMITTED)
        ).fetchone()
        if row is None:
            raise NotFound(f"artifact version with id {version_id!r} not found")
        return str(row[0])

    def folder_texts(self, version_id: str, paths: Sequence[str],
                     max_bytes: int | None = None) -> list[str]:
        """The stored listings (JSON, core/folders.py) of folders ``paths`` of a committed
        version, in order; with ``max_bytes``, only as many as fit (the first always).

        A version committed before folders were stored gets its rows here, once, from its
        manifest. Raises NotFound for a version not committed and for a path that is not
        one of its folders.
        """
        conn = self._conn()
        if conn.execute("SELECT 1 FROM versions WHERE id = ? AND state = ?",
                        (version_id, COMMITTED)).fetchone() is None:
            raise NotFound(f"artifact version with id {version_id!r} not found")
        out: list[str] = []
        total = 0
        def row_of(path: str) -> Any:
            return conn.execute(
                "SELECT listing FROM version_folders WHERE version_id = ? AND path = ?",
                (version_id, path),
            ).fetchone()

        for path in paths:
            row = row_of(path)
            if row is None and not self._folders_stored(conn, version_id):
                self._store_folders(version_id)
                row = row_of(path)
            if row is None:
                raise NotFound(f"version {version_id} has no folder {shown(path)}")
            text = str(row[0])
            if out and max_bytes is not None and total + len(text) > max_bytes:
                break
            out.append(text)
            total += len(text)
        return out

    @staticmethod
    def _folders_stored(conn: sqlite3.Connection, version_id: str) -> bool:
        # every version with stored folders has a row for its root
        return conn.execute(
            "SELECT 1 FROM version_folders WHERE version_id = ? AND path = ''", (version_id,)
        ).fetchone() is not None

    def _store_folders(self, version_id: str) -> None:
        """Write the folder rows of a version committed before they were kept (parsed
        outside the write lock; two processes doing it at once write the same rows)."""
        rows = list(folder_rows(Manifest.from_json(self.manifest_json(version_id))))
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO version_folders (version_id, path, listing) "
                "VALUES (?, ?, ?)", ((version_id, path, text) for path, text in rows),
            )
        log.info("version %s: stored its %d folders' listings", version_id, len(rows))

    def _with_aliases(self, rows: Sequence[Sequence[Any]]) -> list[VersionInfo]:
        out = []
        conn = self._conn()
        for r in rows:
            aliases = tuple(
                a[0]
                for a in conn.execute(
                    "SELECT alias FROM aliases WHERE version_id = ? ORDER BY alias", (r[0],)
                )
            )
            out.append(
                VersionInfo(
                    id=r[0], entity=r[1], project=r[2], name=r[3], type=r[4], index=r[5],
                    state=r[6], digest=r[7], size=r[8], file_count=r[9], created_at=r[10],
                    updated_at=r[11], description=r[12], metadata=_stored_metadata(r[0], r[13]),
                    aliases=aliases,
                )
            )
        return out

    # ---- API keys ------------------------------------------------------------------------

    def create_key(self, entity: str, *, read_only: bool = False) -> str:
        """Make a new API key for ``entity``; only its SHA-256 is kept, so show it once."""
        key = "afs_" + secrets.token_urlsafe(32)
        with self._write() as db:
            db.execute(
                "INSERT INTO api_keys (entity, key_hash, read_only, created_at) VALUES (?,?,?,?)",
                (entity, _key_hash(key), int(read_only), time.time()),
            )
        return key

    def check_key(self, key: str) -> tuple[str, bool] | None:
        """``(entity, read_only)`` for a known key, else None."""
        row = self._conn().execute(
            "SELECT entity, read_only FROM api_keys WHERE key_hash = ?", (_key_hash(key),)
        ).fetchone()
        return (str(row[0]), bool(row[1])) if row else None

    # ---- blob access (see store.blobs.BlobAccess) ----------------------------------------

    def accessible_blobs(self, entity: str, keys: Collection[str]) -> set[str]:
        """The blob keys (hex MD5) among ``keys`` that ``entity`` may reach."""
        wanted = list(keys)
        found: set[str] = set()
        conn = self._conn()
        for start in range(0, len(wanted), _IN_BATCH):
            part = wanted[start : start + _IN_BATCH]
            found.update(r[0] for r in conn.execute(
                "SELECT blob_key FROM blob_access WHERE entity = ? AND blob_key IN "
                f"({','.join('?' * len(part))})", (entity, *part)))
        return found

    def grant_blobs(self, entity: str, keys: Iterable[str]) -> None:
        """Let ``entity`` reach the blobs ``keys`` (hex MD5) from now on."""
        with self._write() as db:
            db.executemany("INSERT OR IGNORE INTO blob_access (entity, blob_key) VALUES (?, ?)",
                           ((entity, k) for k in keys))

    # ---- writing -------------------------------------------------------------------------

    def commit_version(
        self,
        *,
        entity: str,
        project: str,
        name: str,
        type_: str,
        manifest_json: str,
        digest: str,
        size: int,
        file_count: int,
        description: str | None,
        metadata: dict[str, Any],
        aliases: Sequence[str] = (),
        blob_keys: Iterable[str] = (),
        commit_key: str | None = None,
        folders: Iterable[tuple[str, str]] = (),
    ) -> VersionInfo:
        """Insert the next version of a collection as COMMITTED, with ``latest`` and aliases.

        Creates entity, project and collection on first use; the entity reaches the blobs
        ``blob_keys`` (the version's, hex MD5) from the same transaction on, and its
        folders' listings ``folders`` (``core.folders.folder_rows``) are stored with it. A
        ``commit_key`` the entity used before returns the version that commit made, and
        changes nothing (unless that version was deleted since: then it is committed
        anew, and the key names the new version). Raises Conflict when the collection
        exists with another type, or when the key was used for another collection.
        """
        for alias in aliases:
            validate_alias(alias)
        now = time.time()
        version_id = secrets.token_hex(12)
        meta = json.dumps(metadata, sort_keys=True)
        with self._write() as db:
            if commit_key is not None:
                earlier = self._version_of_key(db, entity, commit_key)
                if earlier is not None:
                    made = self.version_by_id(earlier, include_deleted=True)
                    if (made.project, made.name) != (project, name):
                        raise Conflict(
                            f"commit key {commit_key!r} was used for {made.qualified_name}"
                        )
                    # a version deleted since is no answer: the changes would pass for saved
                    # in a version nobody can read; commit them again, and the key with them
                    if made.state != DELETED:
                        return made
            collection_id = self._collection_id(db, entity, project, name, type_, now)
            (top,) = db.execute(
                "SELECT coalesce(max(idx), -1) FROM versions WHERE collection_id = ?",
                (collection_id,),
            ).fetchone()
            db.execute(
                "INSERT INTO versions (id, collection_id, idx, state, digest, size, file_count, "
                "created_at, updated_at, description, metadata, manifest) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    version_id, collection_id, top + 1, COMMITTED, digest, size, file_count,
                    now, now, description, meta, manifest_json,
                ),
            )
            db.executemany(
                "INSERT INTO version_folders (version_id, path, listing) VALUES (?, ?, ?)",
                ((version_id, path, text) for path, text in folders),
            )
            for alias in {LATEST, *aliases}:
                self._point_alias(db, collection_id, alias, version_id)
            db.executemany("INSERT OR IGNORE INTO blob_access (entity, blob_key) VALUES (?, ?)",
                           ((entity, k) for k in blob_keys))
            if commit_key is not None:
                db.execute(
                    "INSERT OR REPLACE INTO commit_keys (entity, commit_key, version_id, "
                    "created_at) VALUES (?,?,?,?)", (entity, commit_key, version_id, now),
                )
        return self.version_by_id(version_id)

    @staticmethod
    def _version_of_key(db: sqlite3.Connection, entity: str, commit_key: str) -> str | None:
        row = db.execute(
            "SELECT version_id FROM commit_keys WHERE entity = ? AND commit_key = ?",
            (entity, commit_key),
        ).fetchone()
        return str(row[0]) if row else None

    def version_by_commit_key(self, entity: str, commit_key: str) -> VersionInfo | None:
        """The version a commit with this key made, if it was made and is not deleted."""
        found = self._version_of_key(self._conn(), entity, commit_key)
        if found is None:
            return None
        try:
            return self.version_by_id(found)
        except NotFound:
            return None

    def _collection_id(
        self, db: sqlite3.Connection, entity: str, project: str, name: str, type_: str,
        now: float,
    ) -> int:
        db.execute("INSERT OR IGNORE INTO entities (name) VALUES (?)", (entity,))
        (entity_id,) = db.execute("SELECT id FROM entities WHERE name = ?", (entity,)).fetchone()
        db.execute(
            "INSERT OR IGNORE INTO projects (entity_id, name) VALUES (?, ?)", (entity_id, project)
        )
        (project_id,) = db.execute(
            "SELECT id FROM projects WHERE entity_id = ? AND name = ?", (entity_id, project)
        ).fetchone()
        row = db.execute(
            "SELECT id, type FROM collections WHERE project_id = ? AND name = ?",
            (project_id, name),
        ).fetchone()
        if row is None:
            cur = db.execute(
                "INSERT INTO collections (project_id, name, type, created_at) VALUES (?,?,?,?)",
                (project_id, name, type_, now),
            )
            return int(cur.lastrowid or 0)
        if row[1] != type_:
            raise Conflict(
                f"artifact {entity}/{project}/{name} has type {row[1]!r}, not {type_!r}; "
                "a collection holds one type"
            )
        return int(row[0])

    @staticmethod
    def _point_alias(db: sqlite3.Connection, collection_id: int, alias: str, vid: str) -> None:
        db.execute(
            "INSERT INTO aliases (collection_id, alias, version_id) VALUES (?,?,?) "
            "ON CONFLICT (collection_id, alias) DO UPDATE SET version_id = excluded.version_id",
            (collection_id, alias, vid),
        )

    def _committed_row(self, db: sqlite3.Connection, version_id: str) -> tuple[int, int]:
        row = db.execute(
            "SELECT collection_id, idx FROM versions WHERE id = ? AND state = ?",
            (version_id, COMMITTED),
        ).fetchone()
        if row is None:
            raise NotFound(f"artifact version with id {version_id!r} not found")
        return int(row[0]), int(row[1])

    def add_alias(self, version_id: str, alias: str) -> VersionInfo:
        """Point ``alias`` at this version, moving it off any other version of the collection."""
        validate_alias(alias)
        if alias == LATEST:
            raise InvalidName("'latest' always names the newest version; it cannot be moved")
        with self._write() as db:
            collection_id, _ = self._committed_row(db, version_id)
            self._point_alias(db, collection_id, alias, version_id)
            self._touch(db, version_id)
        return self.version_by_id(version_id)

    def remove_alias(self, version_id: str, alias: str) -> VersionInfo:
        if alias == LATEST:
            raise InvalidName("'latest' always names the newest version; it cannot be removed")
        with self._write() as db:
            self._committed_row(db, version_id)
            db.execute(
                "DELETE FROM aliases WHERE version_id = ? AND alias = ?", (version_id, alias)
            )
            self._touch(db, version_id)
        return self.version_by_id(version_id)

    def update_version(
        self,
        version_id: str,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> VersionInfo:
        """Change the mutable fields of a committed version (its files never change).

        Raises InvalidRequest when the metadata or description is past its bounds.
        """
        check_description(description)
        if metadata is not None:
            check_metadata(metadata)
        with self._write() as db:
            self._committed_row(db, version_id)
            if description is not None:
                db.execute(
                    "UPDATE versions SET description = ? WHERE id = ?", (description, version_id)
                )
            if metadata is not None:
                db.execute(
                    "UPDATE versions SET metadata = ? WHERE id = ?",
                    (json.dumps(metadata, sort_keys=True), version_id),
                )
            self._touch(db, version_id)
        return self.version_by_id(version_id)

    @staticmethod
    def _touch(db: sqlite3.Connection, version_id: str) -> None:
        db.execute("UPDATE versions SET updated_at = ? WHERE id = ?", (time.time(), version_id))

    def delete_version(self, version_id: str, *, delete_aliases: bool = False) -> None:
        """Mark a version DELETED; its number is never reused.

        Raises Conflict while it holds aliases (``latest`` included) unless ``delete_aliases``.
        ``latest`` then moves to the newest version still committed.
        """
        with self._write() as db:
            collection_id, _ = self._committed_row(db, version_id)
            held = [
                r[0]
                for r in db.execute(
                    "SELECT alias FROM aliases WHERE version_id = ? ORDER BY alias", (version_id,)
                )
            ]
            if held and not delete_aliases:
                raise Conflict(
                    f"version holds aliases {', '.join(held)}; remove them first or pass "
                    "delete_aliases=True (--delete-aliases)"
                )
            db.execute("DELETE FROM aliases WHERE version_id = ?", (version_id,))
            db.execute(
                "UPDATE versions SET state = ?, updated_at = ? WHERE id = ?",
                (DELETED, time.time(), version_id),
            )
            newest = db.execute(
                "SELECT id FROM versions WHERE collection_id = ? AND state = ? "
                "ORDER BY idx DESC LIMIT 1",
                (collection_id, COMMITTED),
            ).fetchone()
            if newest:
                self._point_alias(db, collection_id, LATEST, newest[0])
