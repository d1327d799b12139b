"""Mark and sweep of the blobs no live version references (``artifactfs gc``).

Blobs are shared by every version and entity, so deleting a version removes no bytes; gc
does, later. What it keeps (``live``):

- every blob a version references that is not DELETED;
- every blob a DELETED version references while its deletion is younger than the grace
  (a deletion is its ``updated_at``: marking a version DELETED sets it): a mistaken
  delete can still be looked at by an operator in the database, with its bytes;
- every blob written less than the grace ago (its file's mtime, its object's
  LastModified), referenced or not: the blob of a commit still in flight, and a manifest
  uploaded to be committed by reference (``manifest_blob``), which no version references
  even after its commit (the version keeps the manifest's text in the database).

A blob that is none of these goes, with its chunk index and the ``blob_access`` rows that
let entities reach it (they would otherwise grant a blob that is not there to whoever
uploads the same bytes later, and grow forever). The ``version_folders`` rows of DELETED
versions past the grace go too: only committed versions' folders are ever read. The rows of
the deleted versions themselves stay (their numbers are never reused, and their manifests
say what was there).

Commits running meanwhile: the mark is read without stopping anyone, then each batch of the
sweep is looked at again under the store's sweep lock (``store/sweeplock.py``), which every
commit holds from its check of the blobs until its version is stored. Under it gc reads the
versions committed since the mark and asks storage again for each blob's write time, and
removes only what is still dead. So a commit either lands before the batch (its blobs are
kept) or checks its blobs after the batch is gone (it fails, naming the blob to upload
again); never a version naming bytes removed.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from artifactfs.core.digests import MD5_EXTRA_KEY, blob_key, blob_key_or_none
from artifactfs.core.errors import InvalidRequest
from artifactfs.core.records import DELETED
from artifactfs.store.blobstore import StoredBlob
from artifactfs.store.database import unavailable_errors
from artifactfs.store.schema import blob_access, version_folders, versions

if TYPE_CHECKING:
    from artifactfs.store.store import Store

__all__ = ["GcPlan", "GcResult", "parse_grace", "plan_gc", "sweep"]

log = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

SWEEP_BATCH = 500
"""Blobs removed under one hold of the sweep lock: commits wait at most for one batch's
second look and removal (tens of milliseconds on a folder, a few requests on S3)."""

_IN_BATCH = 500  # names in one IN list (SQLite before 3.32 allows 999 parameters)


def parse_grace(text: str) -> float:
    """A grace as ``30m``, ``24h``, ``7d``, ``90s`` or ``0``, in seconds. Raises
    InvalidRequest, in one line, for anything else."""
    found = re.fullmatch(r"(\d{1,9})([smhd]?)", text.strip())
    if found is None or (not found.group(2) and int(found.group(1)) != 0):
        raise InvalidRequest(f"grace {text!r} is not a duration: write it as 30m, 24h or 7d "
                             "(or 0 for none)")
    return float(int(found.group(1)) * _UNITS.get(found.group(2), 1))


@dataclass
class GcPlan:
    """What the mark found: the blobs to remove, and what the sweep needs to look again."""

    grace: float
    cutoff: float
    """Blobs written and versions deleted before this moment (epoch seconds) may go."""
    doomed: list[StoredBlob]
    scanned: int = 0
    live: int = 0
    young: int = 0
    expired_versions: list[str] = field(default_factory=list)
    """DELETED versions past the grace that still have folder rows."""
    live_keys: set[str] = field(default_factory=set, repr=False)
    marked: set[str] = field(default_factory=set, repr=False)
    """The versions whose blobs are in ``live_keys``."""

    @property
    def doomed_bytes(self) -> int:
        return sum(b.size for b in self.doomed)


@dataclass
class GcResult:
    removed: list[StoredBlob]
    spared: int
    """Blobs of the plan that a commit or an upload took up before their batch."""
    folder_rows: int
    access_rows: int

    @property
    def removed_bytes(self) -> int:
        return sum(b.size for b in self.removed)


def _live_version_ids(conn: Connection, cutoff: float) -> set[str]:
    query = sa.select(versions.c.id).where(
        sa.or_(versions.c.state != DELETED, versions.c.updated_at >= cutoff))
    return set(conn.execute(query).scalars())


def _blob_keys_of(conn: Connection, version_id: str) -> Iterator[str]:
    """The blob keys a version's manifest names; every MD5-shaped digest, a reference's
    and a symlink's too, and an XXH128 entry's extra.md5 (keeping a blob too many is
    harmless, one too few is not)."""
    text = conn.execute(sa.select(versions.c.manifest).where(versions.c.id == version_id)
                        ).scalar()
    if text is None:
        return
    contents = json.loads(text).get("contents") or {}
    for entry in contents.values():
        if not isinstance(entry, dict):
            continue
        key = blob_key_or_none(entry.get("digest"))
        if key is not None:
            yield key
        extra = entry.get("extra")
        if extra and isinstance(extra, dict) and MD5_EXTRA_KEY in extra:
            key = blob_key_or_none(extra[MD5_EXTRA_KEY])
            if key is not None:
                yield key


def _mark(conn: Connection, plan: GcPlan) -> None:
    """Add the blobs of live versions not marked yet to ``plan.live_keys``."""
    fresh = _live_version_ids(conn, plan.cutoff) - plan.marked
    for version_id in fresh:
        plan.live_keys.update(_blob_keys_of(conn, version_id))
    plan.marked |= fresh
    conn.rollback()  # SQLAlchemy's bookkeeping only: the driver autocommits


def plan_gc(store: Store, *, grace: float, now: float | None = None) -> GcPlan:
    """The mark: read every live version's blobs, then list storage. Changes nothing.
    DatabaseUnavailable when the database goes away meanwhile."""
    with unavailable_errors(store.db.url):
        return _plan_gc(store, grace=grace, now=now)


def _plan_gc(store: Store, *, grace: float, now: float | None) -> GcPlan:
    cutoff = (time.time() if now is None else now) - grace
    plan = GcPlan(grace=grace, cutoff=cutoff, doomed=[])
    with store.db.engine.connect() as conn:
        _mark(conn, plan)
        expired = (sa.select(version_folders.c.version_id).distinct()
                   .join(versions, versions.c.id == version_folders.c.version_id)
                   .where(versions.c.state == DELETED, versions.c.updated_at < cutoff))
        plan.expired_versions = sorted(conn.execute(expired).scalars())
        conn.rollback()
    # listed after the mark: a blob a commit took up meanwhile is either young or seen again
    # by the sweep's second look
    for blob in store.blobs.listing():
        plan.scanned += 1
        if blob_key(blob.digest) in plan.live_keys:
            plan.live += 1
        elif blob.written_at >= cutoff:
            plan.young += 1
        else:
            plan.doomed.append(blob)
    return plan


def _batches(items: Sequence[StoredBlob], size: int) -> Iterator[Sequence[StoredBlob]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _drop_access(conn: Connection, entities: Iterable[str], keys: Sequence[str]) -> int:
    """Delete the grants of ``keys``, one statement per entity (by the primary key: no
    index has ``blob_key`` first)."""
    removed = 0
    for entity in entities:
        for start in range(0, len(keys), _IN_BATCH):
            result = conn.execute(blob_access.delete().where(
                blob_access.c.entity == entity,
                blob_access.c.blob_key.in_(keys[start : start + _IN_BATCH])))
            removed += max(result.rowcount, 0)
    conn.commit()
    return removed


def sweep(store: Store, plan: GcPlan, *,
          on_blobs: Callable[[int], None] | None = None) -> GcResult:
    """Remove what ``plan`` doomed and is still dead when its batch comes (see the module);
    ``on_blobs`` is told how many blobs of the plan each batch settled. DatabaseUnavailable
    when the database goes away meanwhile."""
    with unavailable_errors(store.db.url):
        return _sweep(store, plan, on_blobs=on_blobs)


def _sweep(store: Store, plan: GcPlan, *, on_blobs: Callable[[int], None] | None) -> GcResult:
    removed: list[StoredBlob] = []
    spared = access_rows = 0
    engine = store.db.engine
    with engine.connect() as conn:
        entities = list(conn.execute(sa.select(blob_access.c.entity).distinct()).scalars())
        conn.rollback()
    for batch in _batches(plan.doomed, SWEEP_BATCH):
        with store.sweep_lock.exclusive(), engine.connect() as conn:
            _mark(conn, plan)  # the versions committed since the mark, or since the last batch
            now = store.blobs.stats([b.digest for b in batch])
            gone: list[StoredBlob] = []
            for blob in batch:
                stored = now[blob.digest]
                if stored is None:  # removed by someone else meanwhile: nothing to do
                    continue
                if blob_key(blob.digest) in plan.live_keys or stored.written_at >= plan.cutoff:
                    spared += 1
                    continue
                gone.append(stored)
            # the grants first: a sweep stopped between the two leaves dead blobs the next
            # one finds, never rows naming blobs no listing will show again
            access_rows += _drop_access(conn, entities, [blob_key(b.digest) for b in gone])
            store.blobs.delete([b.digest for b in gone])
        removed.extend(gone)
        log.info("gc: removed %d blobs (%d bytes) of a batch of %d from %s", len(gone),
                 sum(b.size for b in gone), len(batch), store.blobs.description)
        if on_blobs is not None:
            on_blobs(len(batch))
    folder_rows = 0
    with engine.connect() as conn:
        for start in range(0, len(plan.expired_versions), _IN_BATCH):
            result = conn.execute(version_folders.delete().where(
                version_folders.c.version_id.in_(
                    plan.expired_versions[start : start + _IN_BATCH])))
            folder_rows += max(result.rowcount, 0)
        conn.commit()
    return GcResult(removed=removed, spared=spared, folder_rows=folder_rows,
                    access_rows=access_rows)
