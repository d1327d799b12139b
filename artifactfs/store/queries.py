"""Every statement ``MetadataDB`` runs, built once from ``schema.py`` with bound parameters.

Built once, not per call: making a SELECT with SQLAlchemy Core costs about 100 us (an upsert
with ``excluded`` several times that, as it builds an alias of the table's columns), which
made a key check 25 times slower than the ``sqlite3`` module's. A statement object is
immutable, so a module-level one is shared by every thread, and SQLAlchemy compiles it once
per dialect (its compiled cache). The upserts differ in form between SQLite and PostgreSQL
(both spell ``ON CONFLICT``, but each dialect has its own ``insert``): ``Upserts`` holds one
set per dialect.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import Delete, Insert, Select, Update

from artifactfs.core.records import COMMITTED
from artifactfs.store.schema import (
    aliases,
    api_keys,
    blob_access,
    collections,
    commit_keys,
    entities,
    projects,
    version_folders,
    version_tags,
    versions,
)

__all__ = ["VERSION_COLUMNS", "Upserts", "upserts"]

_v, _c, _p, _e, _a = versions, collections, projects, entities, aliases
_b = sa.bindparam

VERSION_COLUMNS = (
    _v.c.id, _e.c.name, _p.c.name, _c.c.name, _c.c.type, _v.c.idx, _v.c.state, _v.c.digest,
    _v.c.size, _v.c.file_count, _v.c.created_at, _v.c.updated_at, _v.c.description,
    _v.c.metadata,
)
"""A version with its names, in the order ``MetadataDB._version_infos`` reads them."""

_NAMED = (_v.join(_c, _c.c.id == _v.c.collection_id).join(_p, _p.c.id == _c.c.project_id)
          .join(_e, _e.c.id == _p.c.entity_id))
_IN_COLLECTION = (_e.c.name == _b("entity"), _p.c.name == _b("project"),
                  _c.c.name == _b("name"), _v.c.state == COMMITTED)

# ---- reading ---------------------------------------------------------------------------------

ENTITIES: Select[Any] = sa.select(_e.c.name).order_by(_e.c.name)
PROJECTS: Select[Any] = (sa.select(_p.c.name).join(_e, _e.c.id == _p.c.entity_id)
                         .where(_e.c.name == _b("entity")).order_by(_p.c.name))
_COUNT = (sa.select(sa.func.count()).select_from(_v)
          .where(_v.c.collection_id == _c.c.id, _v.c.state == COMMITTED).scalar_subquery())
_COLLECTIONS = (sa.select(_c.c.name, _c.c.type, _c.c.created_at, _COUNT)
                .join(_p, _p.c.id == _c.c.project_id).join(_e, _e.c.id == _p.c.entity_id)
                .where(_e.c.name == _b("entity"), _p.c.name == _b("project")))
COLLECTIONS: Select[Any] = _COLLECTIONS.order_by(_c.c.name)
COLLECTIONS_OF_TYPE: Select[Any] = _COLLECTIONS.where(_c.c.type == _b("type")).order_by(
    _c.c.name)
COLLECTION_TYPE: Select[Any] = (
    sa.select(_c.c.type).join(_p, _p.c.id == _c.c.project_id)
    .join(_e, _e.c.id == _p.c.entity_id)
    .where(_e.c.name == _b("entity"), _p.c.name == _b("project"), _c.c.name == _b("name")))
VERSIONS: Select[Any] = (sa.select(*VERSION_COLUMNS).select_from(_NAMED)
                         .where(*_IN_COLLECTION).order_by(_v.c.idx))
BY_INDEX: Select[Any] = (sa.select(*VERSION_COLUMNS).select_from(_NAMED)
                         .where(*_IN_COLLECTION, _v.c.idx == _b("idx")))
BY_ALIAS: Select[Any] = (
    sa.select(*VERSION_COLUMNS)
    .select_from(_NAMED.join(_a, sa.and_(_a.c.version_id == _v.c.id,
                                         _a.c.collection_id == _c.c.id)))
    .where(*_IN_COLLECTION, _a.c.alias == _b("alias")))
BY_ID: Select[Any] = (sa.select(*VERSION_COLUMNS).select_from(_NAMED)
                      .where(_v.c.id == _b("vid")))
ALIASES_OF: Select[Any] = (sa.select(_a.c.version_id, _a.c.alias)
                           .where(_a.c.version_id.in_(_b("vids", expanding=True)))
                           .order_by(_a.c.alias))
MANIFEST: Select[Any] = sa.select(_v.c.manifest).where(_v.c.id == _b("vid"),
                                                       _v.c.state == COMMITTED)
IS_COMMITTED: Select[Any] = sa.select(_v.c.id).where(_v.c.id == _b("vid"),
                                                     _v.c.state == COMMITTED)
FOLDER: Select[Any] = sa.select(version_folders.c.listing).where(
    version_folders.c.version_id == _b("vid"), version_folders.c.path == _b("path"))
KEY: Select[Any] = sa.select(api_keys.c.entity, api_keys.c.read_only).where(
    api_keys.c.key_hash == _b("hash"))
_KEY_ROW = (api_keys.c.id, api_keys.c.entity, api_keys.c.read_only, api_keys.c.created_at,
            api_keys.c.key_hash)
KEYS: Select[Any] = sa.select(*_KEY_ROW).order_by(api_keys.c.id)
KEY_BY_ID: Select[Any] = sa.select(*_KEY_ROW).where(api_keys.c.id == _b("id"))
KEY_BY_HASH: Select[Any] = sa.select(*_KEY_ROW).where(api_keys.c.key_hash == _b("hash"))
REVOKE_KEY: Delete = api_keys.delete().where(api_keys.c.id == _b("id"))
REACHABLE: Select[Any] = sa.select(blob_access.c.blob_key).where(
    blob_access.c.entity == _b("entity"), blob_access.c.blob_key.in_(_b("keys", expanding=True)))
VERSION_OF_KEY: Select[Any] = sa.select(commit_keys.c.version_id).where(
    commit_keys.c.entity == _b("entity"), commit_keys.c.commit_key == _b("key"))
KEY_MADE_AT: Select[Any] = sa.select(commit_keys.c.created_at).where(
    commit_keys.c.entity == _b("entity"), commit_keys.c.commit_key == _b("key"))
"""When a key was recorded: its version's own time when its commit made it, later when the
commit found the content in an older version."""

# ---- writing ---------------------------------------------------------------------------------

ADD_KEY: Insert = api_keys.insert()
ENTITY_ID: Select[Any] = sa.select(_e.c.id).where(_e.c.name == _b("entity"))
PROJECT_ID: Select[Any] = sa.select(_p.c.id).where(_p.c.entity_id == _b("entity_id"),
                                                   _p.c.name == _b("project"))
LOCK_COLLECTION: Select[Any] = (
    sa.select(_c.c.id, _c.c.type)
    .where(_c.c.project_id == _b("project_id"), _c.c.name == _b("name")).with_for_update())
"""The collection's row, locked to the end of the transaction (SQLite: a no-op, the
transaction holds the database's write lock already)."""
LOCK_COLLECTION_BY_ID: Select[Any] = (sa.select(_c.c.id).where(_c.c.id == _b("cid"))
                                      .with_for_update())
TOP_INDEX: Select[Any] = sa.select(sa.func.coalesce(sa.func.max(_v.c.idx), -1)).where(
    _v.c.collection_id == _b("cid"))
ADD_VERSION: Insert = versions.insert()
ADD_FOLDERS: Insert = version_folders.insert()
COLLECTION_OF: Select[Any] = sa.select(_v.c.collection_id).where(_v.c.id == _b("vid"))
STATE_OF: Select[Any] = sa.select(_v.c.state).where(_v.c.id == _b("vid"))
ALIASES_OF_ONE: Select[Any] = (sa.select(_a.c.alias).where(_a.c.version_id == _b("vid"))
                               .order_by(_a.c.alias))
REMOVE_ALIAS: Delete = _a.delete().where(_a.c.version_id == _b("vid"), _a.c.alias == _b("alias"))
REMOVE_ALIASES_OF: Delete = _a.delete().where(_a.c.version_id == _b("vid"))
TAGS_OF: Select[Any] = (sa.select(version_tags.c.version_id, version_tags.c.tag)
                        .where(version_tags.c.version_id.in_(_b("vids", expanding=True)))
                        .order_by(version_tags.c.version_id, version_tags.c.position))
TAGS_OF_ONE: Select[Any] = (sa.select(version_tags.c.tag)
                            .where(version_tags.c.version_id == _b("vid"))
                            .order_by(version_tags.c.position))
ADD_TAGS: Insert = version_tags.insert()
REMOVE_TAGS_OF: Delete = version_tags.delete().where(version_tags.c.version_id == _b("vid"))
TOUCH: Update = _v.update().where(_v.c.id == _b("vid")).values(updated_at=_b("now"))
SET_DESCRIPTION: Update = _v.update().where(_v.c.id == _b("vid")).values(description=_b("text"))
SET_METADATA: Update = _v.update().where(_v.c.id == _b("vid")).values(metadata=_b("text"))
MARK_DELETED: Update = _v.update().where(_v.c.id == _b("vid")).values(
    state=_b("state"), updated_at=_b("now"))
SAME_DIGEST: Select[Any] = (
    sa.select(_v.c.id, _v.c.manifest)
    .where(_v.c.collection_id == _b("cid"), _v.c.digest == _b("digest"),
           _v.c.state == COMMITTED)
    .order_by(_v.c.idx.desc()))
"""The committed versions of a collection with an artifact digest, newest first, with
their manifests (a commit of identical content returns one of them)."""
NEWEST_COMMITTED: Select[Any] = (
    sa.select(_v.c.id).where(_v.c.collection_id == _b("cid"), _v.c.state == COMMITTED)
    .order_by(_v.c.idx.desc()).limit(1))


class Upserts:
    """The ``INSERT ... ON CONFLICT`` statements, in one dialect's own ``insert``."""

    def __init__(self, dialect: str) -> None:
        insert = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert
        self.entity = insert(_e).values(name=_b("entity")).on_conflict_do_nothing()
        self.project = insert(_p).values(entity_id=_b("entity_id"),
                                         name=_b("project")).on_conflict_do_nothing()
        self.collection = insert(_c).values(
            project_id=_b("project_id"), name=_b("name"), type=_b("type"),
            created_at=_b("now")).on_conflict_do_nothing()
        alias = insert(_a).values(collection_id=_b("cid"), alias=_b("alias"),
                                  version_id=_b("vid"))
        self.alias = alias.on_conflict_do_update(
            index_elements=[_a.c.collection_id, _a.c.alias],
            set_={"version_id": alias.excluded.version_id})
        # executemany statements: their rows come as a list of dicts of column values
        self.grant = insert(blob_access).on_conflict_do_nothing()
        self.folders = insert(version_folders).on_conflict_do_nothing()
        key = insert(commit_keys)
        self.commit_key = key.on_conflict_do_update(
            index_elements=[commit_keys.c.entity, commit_keys.c.commit_key],
            set_={"version_id": key.excluded.version_id,
                  "created_at": key.excluded.created_at})


@functools.cache
def upserts(dialect: str) -> Upserts:
    """The upserts of ``dialect`` (``sqlite``, ``postgresql``), built on first use: the
    PostgreSQL dialect is not even imported by an embedded store."""
    return Upserts(dialect)
