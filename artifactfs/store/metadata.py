"""The store's metadata: entities, projects, collections, versions and aliases, in SQLite or
PostgreSQL through SQLAlchemy Core (``schema.py``; URLs and upgrades in ``database.py``).

Concurrency rules (several processes, and on PostgreSQL several servers, share one database):

- SQLite: WAL mode and a generous busy timeout, so readers never block writers and writers
  queue; every change runs in one ``BEGIN IMMEDIATE`` transaction, which takes the write
  lock before reading what it will change.
- PostgreSQL: every change runs in one READ COMMITTED transaction that first locks the row of
  the collection it changes (``SELECT ... FOR UPDATE``; a collection made by that very
  commit is inserted with ``ON CONFLICT DO NOTHING`` first, so two first commits meet on
  the one row). Each statement after the lock sees what the previous holder committed.
- Either way the next version number is computed and used under that lock, so two writers
  can never both take ``vN``, and an alias move, a delete and the move of ``latest`` are
  each one atomic step of their collection.
- A version row is inserted already COMMITTED, with its manifest, its folder rows and its
  entity's blob grants, in the transaction that moves ``latest`` and the other aliases: a
  crash before the commit leaves nothing visible.
- Commit keys (exactly-once saves) and API keys are rows of the same database, so every
  server on it sees them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, Connection

from artifactfs.core.errors import Conflict, InvalidName, InvalidRequest, NotFound
from artifactfs.core.folders import folder_rows
from artifactfs.core.limits import (
    MAX_SIZE,
    MAX_TAGS,
    UNREADABLE_KEY,
    check_description,
    check_metadata,
    check_tags,
    load_stored_json,
    shown,
)
from artifactfs.core.manifest import Manifest
from artifactfs.core.names import LATEST, parse_version_label, validate_alias
from artifactfs.core.records import (
    COMMITTED,
    DELETED,
    CollectionInfo,
    CommittedVersion,
    VersionInfo,
)
from artifactfs.store import queries as q
from artifactfs.store.database import (
    create_db_engine,
    database_unavailable,
    make_sqlite_folder,
    open_database,
    shown_url,
    sqlite_url,
    unavailable_errors,
)

__all__ = ["KeyInfo", "MetadataDB"]

log = logging.getLogger(__name__)

# a query names at most this many blobs (SQLite before 3.32 allows 999 parameters)
_IN_BATCH = 500
# the health route's query: trivial, yet it reads the database (a SELECT 1 does not open
# a SQLite file), one row of a table every schema revision has
_PING = text("SELECT 1 FROM alembic_version LIMIT 1")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as the store keeps it: its id, entity, access, age and the start of its
    SHA-256 (enough to tell keys apart, nothing to use as one)."""

    id: int
    entity: str
    read_only: bool
    created_at: float
    fingerprint: str
    """The first 12 hex digits of the key's SHA-256."""

    @classmethod
    def of(cls, row: Any) -> KeyInfo:
        return cls(int(row[0]), str(row[1]), bool(row[2]), float(row[3]), str(row[4])[:12])

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "entity": self.entity, "read_only": self.read_only,
                "created_at": self.created_at, "fingerprint": self.fingerprint}


def _key_hash(key: str) -> str:
    # keys are 256 random bits, so a plain SHA-256 is enough (no salt or stretching needed)
    return hashlib.sha256(key.encode()).hexdigest()


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


class MetadataDB:
    """The metadata of one store; safe to share between threads.

    ``url``: a SQLAlchemy URL (``database.parse_db_url``), or the path of a SQLite file.
    ``upgrade``: bring an older schema up at open; by default on SQLite only (the embedded
    store upgrades itself, as it always did; a shared PostgreSQL is upgraded on purpose,
    with ``artifactfs db upgrade``). Raises SchemaMismatch for a schema newer than this
    code (or older, without ``upgrade``), DatabaseUnavailable (a RegistryUnavailable) for a
    database that cannot be opened, and from every method for one that cannot be used now
    (``_connection``).

    Connections: on SQLite one per thread, kept (as the ``sqlite3`` code before it did: a
    pool's checkout and return cost more than the query of a key check); on PostgreSQL one
    from the engine's pool per call, so that a connection the server dropped is found and
    replaced at the next checkout.
    """

    def __init__(self, url: URL | Path, *, upgrade: bool | None = None) -> None:
        self.url = sqlite_url(url) if isinstance(url, Path) else url
        make_sqlite_folder(self.url)
        self.engine = create_db_engine(self.url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._upserts = q.upserts(self.engine.dialect.name)
        self._local = threading.local()
        self._compiled: dict[Any, Any] = {}  # (statement, columns) -> its SQL here
        try:
            open_database(self.engine, upgrade=self._sqlite if upgrade is None else upgrade)
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"MetadataDB({shown_url(self.url)})"

    def close(self) -> None:
        """Close this thread's connection and every pooled one (before a fork, say)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            conn.close()
        self.engine.dispose()

    def ping(self) -> None:
        """One trivial query that reads the database: the health route's check. Raises
        DatabaseUnavailable when the database does not answer it."""
        with self._read() as conn:
            self._fetch(conn, _PING, {})

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """The connection of one call. An error that says the database cannot be used now
        (``database.database_unavailable``) leaves as DatabaseUnavailable, whether the
        driver's cursor raised it or SQLAlchemy, and the connection is not used again.

        On PostgreSQL the pool's idle connections are dropped with it: a server that
        stopped or restarted closed them all, and each would otherwise fail one request
        after it is back (ten, more than a client retries), where SQLAlchemy, had it run
        the statement, would have recycled its pool (its "disconnect" handling). On SQLite
        the thread's kept connection is closed, and opened again by the next call.
        """
        with unavailable_errors(self.url):
            if not self._sqlite:
                with self.engine.connect() as conn:
                    try:
                        yield conn
                    except Exception as err:
                        if database_unavailable(err, self.url) is not None:
                            conn.invalidate()
                            self.engine.dispose()  # a new pool; checked-out ones close on return
                        raise
                return
            kept: Connection | None = getattr(self._local, "conn", None)
            if kept is None or kept.closed:
                kept = self._local.conn = self.engine.connect()
            try:
                yield kept
            except Exception as err:
                if database_unavailable(err, self.url) is not None:
                    self._local.conn = None
                    with contextlib.suppress(Exception):
                        kept.close()
                raise

    def _fetch(self, conn: Connection, statement: Any,
               params: dict[str, Any] | list[dict[str, Any]]) -> list[Any]:
        """Run a statement of ``queries`` (no IN list); a read's rows, as tuples. A list of
        parameter sets runs it once for each (``executemany``: a commit's folder rows and
        blob grants, which can be hundreds of thousands).

        Run on the driver's cursor with the SQL SQLAlchemy compiled for this engine, once
        per statement and set of columns: SQLAlchemy's own execution (cache key, parameter
        and result objects) cost about 80 us a statement, which made a key check four times
        and an alias move ten times slower than the ``sqlite3`` module's. No column of the
        schema needs a type conversion on either engine, so nothing is lost by it.
        """
        many = isinstance(params, list)
        sets: list[dict[str, Any]] = params if isinstance(params, list) else [params]
        first = sets[0]
        key = (statement, tuple(first))
        prepared = self._compiled.get(key)
        if prepared is None:
            # an INSERT names the columns given, no more (PostgreSQL fills its ids itself)
            compiled = statement.compile(dialect=self.engine.dialect, column_keys=list(first))
            # the values the statement holds itself (COMMITTED in a WHERE, a LIMIT)
            fixed = {k: v for k, v in compiled.construct_params(_check=False).items()
                     if v is not None}
            prepared = self._compiled[key] = (compiled.string, compiled.positiontup, fixed)
        sql, positions, fixed = prepared
        rows: list[Any] = []
        for values in sets:
            merged = {**fixed, **values}
            # SQLite's qmark takes a list in order; psycopg's pyformat the dict
            rows.append([merged[n] for n in positions] if positions is not None else merged)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if many:
                cursor.executemany(sql, rows)
                return []
            cursor.execute(sql, rows[0])
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            cursor.close()

    def _value(self, conn: Connection, statement: Any, params: dict[str, Any]) -> Any:
        """The first column of the first row of a read, or None."""
        rows = self._fetch(conn, statement, params)
        return rows[0][0] if rows else None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        # SQLite: autocommit at the driver, so each statement reads the latest commit and
        # holds no lock; PostgreSQL: one READ COMMITTED transaction, rolled back at the end
        # (on SQLite, SQLAlchemy's own idea of a transaction then stays open on the kept
        # connection; the driver has none, and the next write's commit ends both)
        with self._connection() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction that commits when the block ends and rolls back if it raises.

        The driver's own transaction, begun and ended by statements: both drivers are in
        autocommit mode (database.create_db_engine), and the statements run on the
        driver's cursor (``_fetch``), where SQLAlchemy's bookkeeping would not see them.
        """
        with self._connection() as conn:
            raw: Any = conn.connection.dbapi_connection
            raw.execute("BEGIN IMMEDIATE" if self._sqlite else "BEGIN")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(Exception):  # a lost connection: the error is above
                    raw.execute("ROLLBACK")
                raise
            else:
                raw.execute("COMMIT")
            finally:
                if conn.in_transaction():  # a read run through SQLAlchemy itself (an IN list)
                    conn.rollback()  # its bookkeeping only: the driver's has ended above

    # ---- reading -------------------------------------------------------------------------

    def list_entities(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in self._fetch(conn, q.ENTITIES, {})]

    def list_projects(self, entity: str) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in self._fetch(conn, q.PROJECTS, {"entity": entity})]

    def list_collections(
        self, entity: str, project: str, type_: str | None = None
    ) -> list[CollectionInfo]:
        args = {"entity": entity, "project": project}
        with self._read() as conn:
            if type_ is None:
                rows = self._fetch(conn, q.COLLECTIONS, args)
            else:
                rows = self._fetch(conn, q.COLLECTIONS_OF_TYPE, {**args, "type": type_})
        return [CollectionInfo(entity, project, n, t, ts, int(c)) for n, t, ts, c in rows]

    def list_types(self, entity: str, project: str) -> list[str]:
        return sorted({c.type for c in self.list_collections(entity, project)})

    def list_versions(self, entity: str, project: str, name: str) -> list[VersionInfo]:
        with self._read() as conn:
            rows = self._fetch(conn, q.VERSIONS,
                               {"entity": entity, "project": project, "name": name})
            return self._version_infos(conn, rows)

    def collection_type(self, entity: str, project: str, name: str) -> str | None:
        with self._read() as conn:
            found = self._value(conn, q.COLLECTION_TYPE,
                                {"entity": entity, "project": project, "name": name})
        return None if found is None else str(found)

    def resolve(self, entity: str, project: str, name: str, alias: str) -> VersionInfo:
        """The committed version ``alias`` (or ``vN``) names; raises NotFound saying what."""
        index = parse_version_label(alias)
        if index is not None and index > MAX_SIZE:  # no 64-bit INTEGER holds it
            raise NotFound(f"artifact {entity}/{project}/{name}:{alias} not found")
        args: dict[str, Any] = {"entity": entity, "project": project, "name": name}
        with self._read() as conn:
            if index is not None:
                rows = self._fetch(conn, q.BY_INDEX, {**args, "idx": index})
            else:
                rows = self._fetch(conn, q.BY_ALIAS, {**args, "alias": alias})
            if not rows:
                raise NotFound(f"artifact {entity}/{project}/{name}:{alias} not found")
            return self._version_infos(conn, rows)[0]

    def version_by_id(self, version_id: str, *, include_deleted: bool = False) -> VersionInfo:
        with self._read() as conn:
            return self._version_by_id(conn, version_id, include_deleted=include_deleted)

    def _version_by_id(self, conn: Connection, version_id: str, *,
                       include_deleted: bool = False) -> VersionInfo:
        rows = self._fetch(conn, q.BY_ID, {"vid": version_id})
        if not rows or (rows[0][6] == DELETED and not include_deleted):
            raise NotFound(f"artifact version with id {version_id!r} not found")
        return self._version_infos(conn, rows)[0]

    def manifest_json(self, version_id: str) -> str:
        with self._read() as conn:
            found = self._value(conn, q.MANIFEST, {"vid": version_id})
        if found is None:
            raise NotFound(f"artifact version with id {version_id!r} not found")
        return str(found)

    def folder_texts(self, version_id: str, paths: Sequence[str],
                     max_bytes: int | None = None) -> list[str]:
        """The stored listings (JSON, core/folders.py) of folders ``paths`` of a committed
        version, in order; with ``max_bytes``, only as many as fit (the first always).

        A version committed before folders were stored gets its rows here, once, from its
        manifest. Raises NotFound for a version not committed and for a path that is not
        one of its folders.
        """
        found = self._folder_texts(version_id, paths, max_bytes)
        if found is None:  # an old version's rows were never made: make them, read again
            self._store_folders(version_id)
            found = self._folder_texts(version_id, paths, max_bytes)
        if found is None:  # cannot be: every manifest has its root folder
            raise NotFound(f"version {version_id} has no stored folders")
        return found

    def _folder_texts(self, version_id: str, paths: Sequence[str],
                      max_bytes: int | None) -> list[str] | None:
        """``folder_texts``, or None when the version has no folder rows yet."""
        out: list[str] = []
        total = 0
        with self._read() as conn:
            if self._value(conn, q.IS_COMMITTED, {"vid": version_id}) is None:
                raise NotFound(f"artifact version with id {version_id!r} not found")
            for path in paths:
                text = self._value(conn, q.FOLDER, {"vid": version_id, "path": path})
                if text is None:
                    # every version with stored folders has a row for its root
                    if self._value(conn, q.FOLDER, {"vid": version_id, "path": ""}) is None:
                        return None
                    raise NotFound(f"version {version_id} has no folder {shown(path)}")
                if out and max_bytes is not None and total + len(text) > max_bytes:
                    break
                out.append(str(text))
                total += len(text)
        return out

    def _store_folders(self, version_id: str) -> None:
        """Write the folder rows of a version committed before they were kept (parsed
        outside the write lock; two processes doing it at once write the same rows)."""
        rows = [{"version_id": version_id, "path": path, "listing": text}
                for path, text in folder_rows(Manifest.from_json(self.manifest_json(version_id)))]
        with self._write() as conn:
            if rows:
                self._fetch(conn, self._upserts.folders, rows)
        log.info("version %s: stored its %d folders' listings", version_id, len(rows))

    def _labels(self, conn: Connection, ids: list[str], one: Any, many: Any
                ) -> dict[str, list[str]]:
        """Each version's aliases or tags, as ``one`` (a version's) or ``many`` (an IN list's
        ``(version_id, label)`` rows) read them, in their order."""
        out: dict[str, list[str]] = {vid: [] for vid in ids}
        if len(ids) == 1:  # the common case, without the IN list's rendering per call
            out[ids[0]] = [r[0] for r in self._fetch(conn, one, {"vid": ids[0]})]
            return out
        for start in range(0, len(ids), _IN_BATCH):
            for vid, label in conn.execute(many, {"vids": ids[start : start + _IN_BATCH]}):
                out[vid].append(label)
        return out

    def _version_infos(self, conn: Connection, rows: Sequence[Any]) -> list[VersionInfo]:
        ids = [r[0] for r in rows]
        held = self._labels(conn, ids, q.ALIASES_OF_ONE, q.ALIASES_OF)
        tags = self._labels(conn, ids, q.TAGS_OF_ONE, q.TAGS_OF)
        return [
            VersionInfo(
                id=r[0], entity=r[1], project=r[2], name=r[3], type=r[4], index=int(r[5]),
                state=r[6], digest=r[7], size=int(r[8]), file_count=int(r[9]),
                created_at=r[10], updated_at=r[11], description=r[12],
                metadata=_stored_metadata(r[0], r[13]), aliases=tuple(held[r[0]]),
                tags=tuple(tags[r[0]]),
            )
            for r in rows
        ]

    # ---- API keys ------------------------------------------------------------------------

    def create_key(self, entity: str, *, read_only: bool = False) -> str:
        """Make a new API key for ``entity``; only its SHA-256 is kept, so show it once."""
        key = "afs_" + secrets.token_urlsafe(32)
        with self._write() as conn:
            self._fetch(conn, q.ADD_KEY, {"entity": entity, "key_hash": _key_hash(key),
                                          "read_only": int(read_only),
                                          "created_at": time.time()})
        return key

    def check_key(self, key: str) -> tuple[str, bool] | None:
        """``(entity, read_only)`` for a known key, else None."""
        with self._read() as conn:
            rows = self._fetch(conn, q.KEY, {"hash": _key_hash(key)})
        return (str(rows[0][0]), bool(rows[0][1])) if rows else None

    def api_keys(self) -> list[KeyInfo]:
        """Every API key, oldest first: what each is (never the key, which is not kept)."""
        with self._read() as conn:
            return [KeyInfo.of(r) for r in self._fetch(conn, q.KEYS, {})]

    def key_info(self, *, key_id: int | None = None, key: str | None = None) -> KeyInfo | None:
        """The key with this id, or this key's own record (found by its hash); None if none."""
        with self._read() as conn:
            if key is not None:
                rows = self._fetch(conn, q.KEY_BY_HASH, {"hash": _key_hash(key)})
            else:
                rows = self._fetch(conn, q.KEY_BY_ID, {"id": key_id})
        return KeyInfo.of(rows[0]) if rows else None

    def revoke_key(self, key_id: int) -> bool:
        """Delete the key with this id; whether there was one. A server refuses it (401)
        from its next check of the key (``serve --key-cache-seconds``)."""
        with self._write() as conn:
            found = self._fetch(conn, q.KEY_BY_ID, {"id": key_id})
            if found:
                self._fetch(conn, q.REVOKE_KEY, {"id": key_id})
        return bool(found)

    # ---- blob access (see store.blobs.BlobAccess) ----------------------------------------

    def accessible_blobs(self, entity: str, keys: Collection[str]) -> set[str]:
        """The blob keys (hex MD5) among ``keys`` that ``entity`` may reach."""
        wanted = list(keys)
        found: set[str] = set()
        with self._read() as conn:
            for start in range(0, len(wanted), _IN_BATCH):
                found.update(conn.execute(q.REACHABLE, {
                    "entity": entity, "keys": wanted[start : start + _IN_BATCH]}).scalars())
        return found

    def grant_blobs(self, entity: str, keys: Iterable[str]) -> None:
        """Let ``entity`` reach the blobs ``keys`` (hex MD5) from now on."""
        with self._write() as conn:
            self._grant(conn, entity, keys)

    def _grant(self, conn: Connection, entity: str, keys: Iterable[str]) -> None:
        # one executemany: a commit of a million entries may grant hundreds of thousands
        rows = [{"entity": entity, "blob_key": k} for k in keys]
        if rows:
            self._fetch(conn, self._upserts.grant, rows)

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
        tags: Sequence[str] = (),
    ) -> CommittedVersion:
        """Insert the next version of a collection as COMMITTED, with ``latest`` and aliases.

        Creates entity, project and collection on first use; the entity reaches the blobs
        ``blob_keys`` (the version's, hex MD5) from the same transaction on, and its
        folders' listings ``folders`` (``core.folders.folder_rows``) are stored with it. A
        ``commit_key`` the entity used before returns the version that commit made, and
        changes nothing (unless that version was deleted since: then it is committed
        anew, and the key names the new version). A committed version of the collection
        with this very manifest is the answer instead of a new one (``unchanged``; see
        ``_same_content``). Raises Conflict when the collection
        exists with another type, or when the key was used for another collection.
        ``tags`` are the new version's; an unchanged one gains those it lacks.
        """
        for alias in aliases:
            validate_alias(alias)
        tags = check_tags(tags)
        now = time.time()
        version_id = secrets.token_hex(12)
        meta = json.dumps(metadata, sort_keys=True)
        folder_list = [{"version_id": version_id, "path": path, "listing": text}
                       for path, text in folders]
        with self._write() as conn:
            # the collection's row lock first (PostgreSQL): a retried commit that raced its
            # first send then finds the key that one wrote
            collection_id = self._collection_id(conn, entity, project, name, type_, now)
            if commit_key is not None:
                earlier = self._version_of_key(conn, entity, commit_key)
                if earlier is not None:
                    made = self._version_by_id(conn, earlier, include_deleted=True)
                    if (made.project, made.name) != (project, name):
                        raise Conflict(
                            f"commit key {commit_key!r} was used for {made.qualified_name}"
                        )
                    # a version deleted since is no answer: the changes would pass for saved
                    # in a version nobody can read; commit them again, and the key with them
                    if made.state != DELETED:
                        # a key recorded after its version was made: its commit found the
                        # content in that version, and its retry says so too
                        at = self._value(conn, q.KEY_MADE_AT, {"entity": entity,
                                                               "key": commit_key})
                        return CommittedVersion.of(made, unchanged=at != made.created_at)
            same = self._same_content(conn, collection_id, digest, manifest_json)
            if same is not None:
                return self._existing(conn, entity, collection_id, same, aliases, commit_key,
                                      now, tags)
            top = self._value(conn, q.TOP_INDEX, {"cid": collection_id})
            self._fetch(conn, q.ADD_VERSION, {
                "id": version_id, "collection_id": collection_id, "idx": int(top) + 1,
                "state": COMMITTED, "digest": digest, "size": size, "file_count": file_count,
                "created_at": now, "updated_at": now, "description": description,
                "metadata": meta, "manifest": manifest_json,
            })
            if folder_list:
                self._fetch(conn, q.ADD_FOLDERS, folder_list)
            self._add_tags(conn, version_id, tags)
            for alias in {LATEST, *aliases}:
                self._point_alias(conn, collection_id, alias, version_id)
            self._grant(conn, entity, blob_keys)
            if commit_key is not None:
                self._fetch(conn, self._upserts.commit_key, {
                    "entity": entity, "commit_key": commit_key, "version_id": version_id,
                    "created_at": now})
        return CommittedVersion.of(self.version_by_id(version_id), unchanged=False)

    def _same_content(self, conn: Connection, collection_id: int, digest: str,
                      manifest_json: str) -> str | None:
        """The newest committed version of the collection whose manifest is this one, text
        for text (so entries, sizes, references, extra and the policy too, not the artifact
        digest alone, which counts paths and digests only: a file made executable, or a
        symlink's target, would pass for no change), or None. Asked under the collection's
        lock, so two identical commits at once make one version."""
        for vid, stored in self._fetch(conn, q.SAME_DIGEST, {"cid": collection_id,
                                                           "digest": digest}):
            if stored == manifest_json:
                return str(vid)
        return None

    def _existing(self, conn: Connection, entity: str, collection_id: int, version_id: str,
                  aliases: Sequence[str], commit_key: str | None, now: float,
                  tags: Sequence[str]) -> CommittedVersion:
        """Answer a commit of content a version holds already with that version, as W&B
        does: the requested aliases move to it; ``latest`` stays on the newest version (it
        always names the newest here, where W&B would move it to the match too), and the
        tags it lacks are added. A ``commit_key`` then names this version, so a retry finds
        it."""
        moved = self._add_tags(conn, version_id, tags)
        for alias in {*aliases} - {LATEST}:
            self._point_alias(conn, collection_id, alias, version_id)
            moved = True
        if moved:
            self._fetch(conn, q.TOUCH, {"vid": version_id, "now": now})
        if commit_key is not None:
            self._fetch(conn, self._upserts.commit_key, {
                "entity": entity, "commit_key": commit_key, "version_id": version_id,
                "created_at": now})
        return CommittedVersion.of(self._version_by_id(conn, version_id), unchanged=True)

    def _add_tags(self, conn: Connection, version_id: str, tags: Sequence[str]) -> bool:
        """Append to the version's tags those of ``tags`` (checked) it lacks, in order;
        whether any was."""
        held = [r[0] for r in self._fetch(conn, q.TAGS_OF_ONE, {"vid": version_id})]
        new = [t for t in tags if t not in held]
        if len(held) + len(new) > MAX_TAGS:  # an unchanged commit's tags join those held
            raise InvalidRequest(
                f"the version would hold {len(held) + len(new)} tags; a version holds at "
                f"most {MAX_TAGS}")
        if new:
            self._fetch(conn, q.ADD_TAGS, [
                {"version_id": version_id, "tag": tag, "position": len(held) + i}
                for i, tag in enumerate(new)])
        return bool(new)

    def _version_of_key(self, conn: Connection, entity: str, commit_key: str) -> str | None:
        found = self._value(conn, q.VERSION_OF_KEY, {"entity": entity, "key": commit_key})
        return None if found is None else str(found)

    def version_by_commit_key(self, entity: str, commit_key: str) -> VersionInfo | None:
        """The version a commit with this key made, if it was made and is not deleted."""
        with self._read() as conn:
            found = self._version_of_key(conn, entity, commit_key)
            if found is None:
                return None
            try:
                return self._version_by_id(conn, found)
            except NotFound:
                return None

    def _collection_id(
        self, conn: Connection, entity: str, project: str, name: str, type_: str,
        now: float,
    ) -> int:
        """The id of the collection, made on first use, its row locked for this
        transaction. Raises Conflict when it holds another type."""
        up = self._upserts
        self._fetch(conn, up.entity, {"entity": entity})
        entity_id = self._value(conn, q.ENTITY_ID, {"entity": entity})
        self._fetch(conn, up.project, {"entity_id": entity_id, "project": project})
        project_id = self._value(conn, q.PROJECT_ID, {"entity_id": entity_id,
                                                      "project": project})
        self._fetch(conn, up.collection, {"project_id": project_id, "name": name,
                                          "type": type_, "now": now})
        (row,) = self._fetch(conn, q.LOCK_COLLECTION, {"project_id": project_id, "name": name})
        if row[1] != type_:
            raise Conflict(
                f"artifact {entity}/{project}/{name} has type {row[1]!r}, not {type_!r}; "
                "a collection holds one type"
            )
        return int(row[0])

    def _point_alias(self, conn: Connection, collection_id: int, alias: str,
                     vid: str) -> None:
        self._fetch(conn, self._upserts.alias, {"cid": collection_id, "alias": alias, "vid": vid})

    def _lock_committed(self, conn: Connection, version_id: str) -> int:
        """Lock the collection of a committed version (see the module's rules); its id.

        The state is read again once the lock is held: a delete that committed while this
        transaction waited for it must be seen. Raises NotFound for a version not committed.
        """
        collection_id = self._value(conn, q.COLLECTION_OF, {"vid": version_id})
        if collection_id is not None:
            self._fetch(conn, q.LOCK_COLLECTION_BY_ID, {"cid": collection_id})
            if self._value(conn, q.STATE_OF, {"vid": version_id}) == COMMITTED:
                return int(collection_id)
        raise NotFound(f"artifact version with id {version_id!r} not found")

    def add_alias(self, version_id: str, alias: str) -> VersionInfo:
        """Point ``alias`` at this version, moving it off any other version of the collection."""
        validate_alias(alias)
        if alias == LATEST:
            raise InvalidName("'latest' always names the newest version; it cannot be moved")
        with self._write() as conn:
            collection_id = self._lock_committed(conn, version_id)
            self._point_alias(conn, collection_id, alias, version_id)
            self._fetch(conn, q.TOUCH, {"vid": version_id, "now": time.time()})
        return self.version_by_id(version_id)

    def remove_alias(self, version_id: str, alias: str) -> VersionInfo:
        if alias == LATEST:
            raise InvalidName("'latest' always names the newest version; it cannot be removed")
        with self._write() as conn:
            self._lock_committed(conn, version_id)
            self._fetch(conn, q.REMOVE_ALIAS, {"vid": version_id, "alias": alias})
            self._fetch(conn, q.TOUCH, {"vid": version_id, "now": time.time()})
        return self.version_by_id(version_id)

    def update_version(
        self,
        version_id: str,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
    ) -> VersionInfo:
        """Change the mutable fields of a committed version (its files never change);
        ``tags`` replaces the version's tags with these, in this order.

        Raises InvalidRequest when the metadata, description or a tag is past its bounds.
        """
        check_description(description)
        if metadata is not None:
            check_metadata(metadata)
        wanted = check_tags(tags) if tags is not None else None
        with self._write() as conn:
            self._lock_committed(conn, version_id)
            if description is not None:
                self._fetch(conn, q.SET_DESCRIPTION, {"vid": version_id, "text": description})
            if metadata is not None:
                self._fetch(conn, q.SET_METADATA, {
                    "vid": version_id, "text": json.dumps(metadata, sort_keys=True)})
            if wanted is not None:
                self._fetch(conn, q.REMOVE_TAGS_OF, {"vid": version_id})
                self._add_tags(conn, version_id, wanted)
            self._fetch(conn, q.TOUCH, {"vid": version_id, "now": time.time()})
        return self.version_by_id(version_id)

    def delete_version(self, version_id: str, *, delete_aliases: bool = False) -> None:
        """Mark a version DELETED; its number is never reused.

        Raises Conflict while it holds aliases (``latest`` included) unless ``delete_aliases``.
        ``latest`` then moves to the newest version still committed.
        """
        with self._write() as conn:
            collection_id = self._lock_committed(conn, version_id)
            held = [r[0] for r in self._fetch(conn, q.ALIASES_OF_ONE, {"vid": version_id})]
            if held and not delete_aliases:
                raise Conflict(
                    f"version holds aliases {', '.join(held)}; remove them first or pass "
                    "delete_aliases=True (--delete-aliases)"
                )
            self._fetch(conn, q.REMOVE_ALIASES_OF, {"vid": version_id})
            self._fetch(conn, q.MARK_DELETED, {"vid": version_id, "state": DELETED,
                                               "now": time.time()})
            newest = self._value(conn, q.NEWEST_COMMITTED, {"cid": collection_id})
            if newest is not None:
                self._point_alias(conn, collection_id, LATEST, str(newest))
