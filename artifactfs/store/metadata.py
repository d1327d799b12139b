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

import hashlib
import json
import logging
import secrets
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection

from artifactfs.core.errors import Conflict, InvalidName, NotFound
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
from artifactfs.store.database import create_db_engine, open_database, shown_url, sqlite_url
from artifactfs.store.schema import (
    aliases,
    api_keys,
    blob_access,
    collections,
    commit_keys,
    entities,
    projects,
    version_folders,
    versions,
)

__all__ = ["MetadataDB"]

log = logging.getLogger(__name__)

# a query names at most this many blobs (SQLite before 3.32 allows 999 parameters)
_IN_BATCH = 500

_v, _c, _p, _e, _a = versions, collections, projects, entities, aliases

_VERSION_SELECT = sa.select(
    _v.c.id, _e.c.name, _p.c.name, _c.c.name, _c.c.type, _v.c.idx, _v.c.state, _v.c.digest,
    _v.c.size, _v.c.file_count, _v.c.created_at, _v.c.updated_at, _v.c.description,
    _v.c.metadata,
).select_from(
    _v.join(_c, _c.c.id == _v.c.collection_id)
    .join(_p, _p.c.id == _c.c.project_id)
    .join(_e, _e.c.id == _p.c.entity_id)
)
"""A version with its names; ``_with_aliases`` reads these columns by position."""


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
    """The metadata of one store; safe to share between threads (a pool of connections).

    ``url``: a SQLAlchemy URL (``database.parse_db_url``), or the path of a SQLite file.
    ``upgrade``: bring an older schema up at open; by default on SQLite only (the embedded
    store upgrades itself, as it always did; a shared PostgreSQL is upgraded on purpose,
    with ``artifactfs db upgrade``). Raises SchemaMismatch for a schema newer than this
    code (or older, without ``upgrade``), RegistryUnavailable for a database that cannot be
    opened.
    """

    def __init__(self, url: URL | Path, *, upgrade: bool | None = None) -> None:
        self.url = sqlite_url(url) if isinstance(url, Path) else url
        self.engine = create_db_engine(self.url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._insert = sqlite.insert if self._sqlite else postgresql.insert
        try:
            open_database(self.engine, upgrade=self._sqlite if upgrade is None else upgrade)
        except BaseException:
            self.engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"MetadataDB({shown_url(self.url)})"

    def close(self) -> None:
        """Close every pooled connection (a process that forks must, before it does)."""
        self.engine.dispose()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        # SQLite: autocommit at the driver, so each statement reads the latest commit and
        # holds no lock; PostgreSQL: one READ COMMITTED transaction, rolled back at the end
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction that commits when the block ends and rolls back if it raises."""
        with self.engine.connect() as conn:
            if self._sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    # ---- reading -------------------------------------------------------------------------

    def list_entities(self) -> list[str]:
        with self._read() as conn:
            return list(conn.execute(sa.select(_e.c.name).order_by(_e.c.name)).scalars())

    def list_projects(self, entity: str) -> list[str]:
        query = (sa.select(_p.c.name).join(_e, _e.c.id == _p.c.entity_id)
                 .where(_e.c.name == entity).order_by(_p.c.name))
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def list_collections(
        self, entity: str, project: str, type_: str | None = None
    ) -> list[CollectionInfo]:
        count = (sa.select(sa.func.count()).select_from(_v)
                 .where(_v.c.collection_id == _c.c.id, _v.c.state == COMMITTED)
                 .scalar_subquery())
        query = (
            sa.select(_c.c.name, _c.c.type, _c.c.created_at, count)
            .join(_p, _p.c.id == _c.c.project_id).join(_e, _e.c.id == _p.c.entity_id)
            .where(_e.c.name == entity, _p.c.name == project)
        )
        if type_ is not None:
            query = query.where(_c.c.type == type_)
        with self._read() as conn:
            rows = conn.execute(query.order_by(_c.c.name)).all()
        return [CollectionInfo(entity, project, n, t, ts, int(c)) for n, t, ts, c in rows]

    def list_types(self, entity: str, project: str) -> list[str]:
        return sorted({c.type for c in self.list_collections(entity, project)})

    def list_versions(self, entity: str, project: str, name: str) -> list[VersionInfo]:
        query = _VERSION_SELECT.where(
            _e.c.name == entity, _p.c.name == project, _c.c.name == name,
            _v.c.state == COMMITTED,
        ).order_by(_v.c.idx)
        with self._read() as conn:
            return self._with_aliases(conn, conn.execute(query).all())

    def collection_type(self, entity: str, project: str, name: str) -> str | None:
        query = (
            sa.select(_c.c.type).join(_p, _p.c.id == _c.c.project_id)
            .join(_e, _e.c.id == _p.c.entity_id)
            .where(_e.c.name == entity, _p.c.name == project, _c.c.name == name)
        )
        with self._read() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else str(found)

    def resolve(self, entity: str, project: str, name: str, alias: str) -> VersionInfo:
        """The committed version ``alias`` (or ``vN``) names; raises NotFound saying what."""
        index = parse_version_label(alias)
        if index is not None and index > MAX_SIZE:  # no 64-bit INTEGER holds it
            raise NotFound(f"artifact {entity}/{project}/{name}:{alias} not found")
        query = _VERSION_SELECT.where(
            _e.c.name == entity, _p.c.name == project, _c.c.name == name,
            _v.c.state == COMMITTED,
        )
        if index is not None:
            query = query.where(_v.c.idx == index)
        else:
            query = query.join(
                _a, sa.and_(_a.c.version_id == _v.c.id, _a.c.collection_id == _c.c.id)
            ).where(_a.c.alias == alias)
        with self._read() as conn:
            rows = conn.execute(query).all()
            if not rows:
                raise NotFound(f"artifact {entity}/{project}/{name}:{alias} not found")
            return self._with_aliases(conn, rows)[0]

    def version_by_id(self, version_id: str, *, include_deleted: bool = False) -> VersionInfo:
        with self._read() as conn:
            return self._version_by_id(conn, version_id, include_deleted=include_deleted)

    def _version_by_id(self, conn: Connection, version_id: str, *,
                       include_deleted: bool = False) -> VersionInfo:
        rows = conn.execute(_VERSION_SELECT.where(_v.c.id == version_id)).all()
        if not rows or (rows[0][6] == DELETED and not include_deleted):
            raise NotFound(f"artifact version with id {version_id!r} not found")
        return self._with_aliases(conn, rows)[0]

    def manifest_json(self, version_id: str) -> str:
        query = sa.select(_v.c.manifest).where(_v.c.id == version_id, _v.c.state == COMMITTED)
        with self._read() as conn:
            found = conn.execute(query).scalar()
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
        if found is None:  # its manifest has no folders at all (cannot be: the root is one)
            raise NotFound(f"version {version_id} has no stored folders")
        return found

    def _folder_texts(self, version_id: str, paths: Sequence[str],
                      max_bytes: int | None) -> list[str] | None:
        """``folder_texts``, or None when the version has no folder rows yet."""
        one = sa.select(version_folders.c.listing).where(
            version_folders.c.version_id == version_id,
            version_folders.c.path == sa.bindparam("path"),
        )
        out: list[str] = []
        total = 0
        with self._read() as conn:
            committed = sa.select(_v.c.id).where(_v.c.id == version_id,
                                                 _v.c.state == COMMITTED)
            if conn.execute(committed).first() is None:
                raise NotFound(f"artifact version with id {version_id!r} not found")
            for path in paths:
                text = conn.execute(one, {"path": path}).scalar()
                if text is None:
                    # every version with stored folders has a row for its root
                    if conn.execute(one, {"path": ""}).first() is None:
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
        rows = list(folder_rows(Manifest.from_json(self.manifest_json(version_id))))
        insert = self._insert(version_folders).on_conflict_do_nothing()
        with self._write() as conn:
            if rows:
                conn.execute(insert, [{"version_id": version_id, "path": path, "listing": text}
                                      for path, text in rows])
        log.info("version %s: stored its %d folders' listings", version_id, len(rows))

    @staticmethod
    def _with_aliases(conn: Connection, rows: Sequence[Any]) -> list[VersionInfo]:
        held: dict[str, list[str]] = {r[0]: [] for r in rows}
        ids = list(held)
        for start in range(0, len(ids), _IN_BATCH):
            query = (sa.select(_a.c.version_id, _a.c.alias)
                     .where(_a.c.version_id.in_(ids[start : start + _IN_BATCH]))
                     .order_by(_a.c.alias))
            for vid, alias in conn.execute(query):
                held[vid].append(alias)
        return [
            VersionInfo(
                id=r[0], entity=r[1], project=r[2], name=r[3], type=r[4], index=int(r[5]),
                state=r[6], digest=r[7], size=int(r[8]), file_count=int(r[9]),
                created_at=r[10], updated_at=r[11], description=r[12],
                metadata=_stored_metadata(r[0], r[13]), aliases=tuple(held[r[0]]),
            )
            for r in rows
        ]

    # ---- API keys ------------------------------------------------------------------------

    def create_key(self, entity: str, *, read_only: bool = False) -> str:
        """Make a new API key for ``entity``; only its SHA-256 is kept, so show it once."""
        key = "afs_" + secrets.token_urlsafe(32)
        with self._write() as conn:
            conn.execute(api_keys.insert().values(
                entity=entity, key_hash=_key_hash(key), read_only=int(read_only),
                created_at=time.time()))
        return key

    def check_key(self, key: str) -> tuple[str, bool] | None:
        """``(entity, read_only)`` for a known key, else None."""
        query = (sa.select(api_keys.c.entity, api_keys.c.read_only)
                 .where(api_keys.c.key_hash == _key_hash(key)))
        with self._read() as conn:
            row = conn.execute(query).first()
        return (str(row[0]), bool(row[1])) if row else None

    # ---- blob access (see store.blobs.BlobAccess) ----------------------------------------

    def accessible_blobs(self, entity: str, keys: Collection[str]) -> set[str]:
        """The blob keys (hex MD5) among ``keys`` that ``entity`` may reach."""
        wanted = list(keys)
        found: set[str] = set()
        with self._read() as conn:
            for start in range(0, len(wanted), _IN_BATCH):
                query = sa.select(blob_access.c.blob_key).where(
                    blob_access.c.entity == entity,
                    blob_access.c.blob_key.in_(wanted[start : start + _IN_BATCH]),
                )
                found.update(conn.execute(query).scalars())
        return found

    def grant_blobs(self, entity: str, keys: Iterable[str]) -> None:
        """Let ``entity`` reach the blobs ``keys`` (hex MD5) from now on."""
        with self._write() as conn:
            self._grant(conn, entity, keys)

    def _grant(self, conn: Connection, entity: str, keys: Iterable[str]) -> None:
        # one executemany: a commit of a million entries may grant hundreds of thousands
        rows = [{"entity": entity, "blob_key": k} for k in keys]
        if rows:
            conn.execute(self._insert(blob_access).on_conflict_do_nothing(), rows)

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
                        return made
            top = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(_v.c.idx), -1))
                .where(_v.c.collection_id == collection_id)
            ).scalar_one()
            conn.execute(versions.insert().values(
                id=version_id, collection_id=collection_id, idx=int(top) + 1, state=COMMITTED,
                digest=digest, size=size, file_count=file_count, created_at=now,
                updated_at=now, description=description, metadata=meta,
                manifest=manifest_json,
            ))
            if folder_list:
                conn.execute(version_folders.insert(), folder_list)
            for alias in {LATEST, *aliases}:
                self._point_alias(conn, collection_id, alias, version_id)
            self._grant(conn, entity, blob_keys)
            if commit_key is not None:
                upsert = self._insert(commit_keys).values(
                    entity=entity, commit_key=commit_key, version_id=version_id,
                    created_at=now)
                conn.execute(upsert.on_conflict_do_update(
                    index_elements=[commit_keys.c.entity, commit_keys.c.commit_key],
                    set_={"version_id": upsert.excluded.version_id,
                          "created_at": upsert.excluded.created_at},
                ))
        return self.version_by_id(version_id)

    @staticmethod
    def _version_of_key(conn: Connection, entity: str, commit_key: str) -> str | None:
        found = conn.execute(sa.select(commit_keys.c.version_id).where(
            commit_keys.c.entity == entity, commit_keys.c.commit_key == commit_key)).scalar()
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
        conn.execute(self._insert(_e).values(name=entity).on_conflict_do_nothing())
        entity_id = conn.execute(sa.select(_e.c.id).where(_e.c.name == entity)).scalar_one()
        conn.execute(self._insert(_p).values(entity_id=entity_id, name=project)
                     .on_conflict_do_nothing())
        project_id = conn.execute(sa.select(_p.c.id).where(
            _p.c.entity_id == entity_id, _p.c.name == project)).scalar_one()
        conn.execute(self._insert(_c).values(project_id=project_id, name=name, type=type_,
                                             created_at=now).on_conflict_do_nothing())
        row = conn.execute(
            sa.select(_c.c.id, _c.c.type)
            .where(_c.c.project_id == project_id, _c.c.name == name).with_for_update()
        ).one()
        if row[1] != type_:
            raise Conflict(
                f"artifact {entity}/{project}/{name} has type {row[1]!r}, not {type_!r}; "
                "a collection holds one type"
            )
        return int(row[0])

    def _point_alias(self, conn: Connection, collection_id: int, alias: str,
                     vid: str) -> None:
        upsert = self._insert(_a).values(collection_id=collection_id, alias=alias,
                                         version_id=vid)
        conn.execute(upsert.on_conflict_do_update(
            index_elements=[_a.c.collection_id, _a.c.alias],
            set_={"version_id": upsert.excluded.version_id},
        ))

    @staticmethod
    def _lock_committed(conn: Connection, version_id: str) -> int:
        """Lock the collection of a committed version (see the module's rules); its id.

        The state is read again once the lock is held: a delete that committed while this
        transaction waited for it must be seen. Raises NotFound for a version not committed.
        """
        collection_id = conn.execute(
            sa.select(_v.c.collection_id).where(_v.c.id == version_id)).scalar()
        if collection_id is not None:
            conn.execute(sa.select(_c.c.id).where(_c.c.id == collection_id).with_for_update())
            state = conn.execute(sa.select(_v.c.state).where(_v.c.id == version_id)).scalar()
            if state == COMMITTED:
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
            self._touch(conn, version_id)
        return self.version_by_id(version_id)

    def remove_alias(self, version_id: str, alias: str) -> VersionInfo:
        if alias == LATEST:
            raise InvalidName("'latest' always names the newest version; it cannot be removed")
        with self._write() as conn:
            self._lock_committed(conn, version_id)
            conn.execute(_a.delete().where(_a.c.version_id == version_id, _a.c.alias == alias))
            self._touch(conn, version_id)
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
        changes: dict[str, Any] = {"updated_at": time.time()}
        if description is not None:
            changes["description"] = description
        if metadata is not None:
            changes["metadata"] = json.dumps(metadata, sort_keys=True)
        with self._write() as conn:
            self._lock_committed(conn, version_id)
            conn.execute(_v.update().where(_v.c.id == version_id).values(**changes))
        return self.version_by_id(version_id)

    @staticmethod
    def _touch(conn: Connection, version_id: str) -> None:
        conn.execute(_v.update().where(_v.c.id == version_id).values(updated_at=time.time()))

    def delete_version(self, version_id: str, *, delete_aliases: bool = False) -> None:
        """Mark a version DELETED; its number is never reused.

        Raises Conflict while it holds aliases (``latest`` included) unless ``delete_aliases``.
        ``latest`` then moves to the newest version still committed.
        """
        with self._write() as conn:
            collection_id = self._lock_committed(conn, version_id)
            held = list(conn.execute(sa.select(_a.c.alias).where(_a.c.version_id == version_id)
                                     .order_by(_a.c.alias)).scalars())
            if held and not delete_aliases:
                raise Conflict(
                    f"version holds aliases {', '.join(held)}; remove them first or pass "
                    "delete_aliases=True (--delete-aliases)"
                )
            conn.execute(_a.delete().where(_a.c.version_id == version_id))
            conn.execute(_v.update().where(_v.c.id == version_id)
                         .values(state=DELETED, updated_at=time.time()))
            newest = conn.execute(
                sa.select(_v.c.id)
                .where(_v.c.collection_id == collection_id, _v.c.state == COMMITTED)
                .order_by(_v.c.idx.desc()).limit(1)
            ).scalar()
            if newest is not None:
                self._point_alias(conn, collection_id, LATEST, str(newest))
