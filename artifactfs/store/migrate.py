"""Copy an embedded store (a folder: SQLite and blob files) into another store, such as
PostgreSQL and an S3 bucket (``artifactfs migrate``, docs/database.md).

Why it is shaped this way:

- The source is read from a snapshot: SQLite's backup API copies ``registry.sqlite3`` (WAL
  and all) into a temporary folder, and that copy is opened and upgraded by ``MetadataDB``,
  so a store of any schema this code can read (a pre-Alembic one too) is read at the head
  schema, and the source itself is never changed, even by a server still running on it.
- Blobs go first, rows after: a version never appears at the target before every blob it
  names is there. Each blob is written through the target's ``BlobStore`` writer, which
  checks the bytes against the key (MD5) before anything is visible and builds the chunk
  index from them; a blob already at the target with the source's size is skipped (and, when
  the backend knows a blob's MD5 without reading it, that is compared too).
- Rows keep their ids, and are inserted in batches, each its own transaction: a run killed
  at any point leaves some rows and some blobs at the target, all whole. The next run finds
  them, checks that each equals the source's row of the same key, and copies the rest; a
  target row that differs, or that the source lacks, means the target holds other data, and
  the run stops before it writes anything.
- PostgreSQL's id sequences are moved past the copied ids, or the target's next new entity,
  project, collection or API key would take an id already used.
- At the end the target is checked: the same row count in every table, every version's
  manifest with the digest the source recorded, every blob a version stores present with
  its size.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key
from artifactfs.core.errors import (
    Conflict,
    DigestMismatch,
    InvalidManifest,
    InvalidName,
    NotFound,
    RegistryUnavailable,
    SchemaMismatch,
)
from artifactfs.core.manifest import Manifest
from artifactfs.core.posix import SYMLINK_EXTRA_KEY
from artifactfs.store.blobs import BlobDir
from artifactfs.store.blobstore import BlobStore
from artifactfs.store.database import blobs_folder, parse_db_url, sqlite_url
from artifactfs.store.metadata import MetadataDB
from artifactfs.store.schema import (
    aliases,
    api_keys,
    blob_access,
    collections,
    commit_keys,
    entities,
    projects,
    run_links,
    runs,
    version_folders,
    version_tags,
    versions,
)

__all__ = ["TABLES", "MigrationReport", "migrate_store"]

TABLES: tuple[sa.Table, ...] = (
    entities, projects, collections, versions, aliases, api_keys, blob_access, commit_keys,
    version_folders, version_tags, runs, run_links,
)
"""Every table, in an order where a row's foreign keys point at rows copied before it."""

_SERIAL = (entities, projects, collections, api_keys)
"""Tables whose id the database makes (a sequence on PostgreSQL)."""

_ROW_BATCH = 500
"""Rows a transaction at the target inserts: enough that a transaction's round trip is
small beside its rows, few enough that a kill loses little."""

_BATCH_TEXT = 32 << 20
"""...or fewer, when their text adds up to this: a version of a million entries holds a
manifest of about 100 MB, and 500 of them in one statement would not fit in memory."""

_FETCH = 100
"""Rows read from a database at a time, few for the same reason."""

Progress = Callable[[str, int, str], Any]
"""``progress(label, total, unit)``: a context manager whose value has ``update(n)``."""


@dataclass
class MigrationReport:
    """What a run did (or, with ``dry_run``, would do)."""

    blobs_copied: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0
    rows_copied: dict[str, int] = field(default_factory=dict)
    rows_present: dict[str, int] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)
    """Source blobs whose bytes do not match their name: not copied."""
    problems: list[str] = field(default_factory=list)
    """What the final check found different at the target (empty: equal)."""
    versions_checked: int = 0
    indexes_checked: int = 0
    target_sizes: dict[str, int] = field(default_factory=dict)
    """The size of every blob this run copied to the target or found there."""
    blobs_checked: int = 0

    @property
    def copied_nothing(self) -> bool:
        return self.blobs_copied == 0 and not any(self.rows_copied.values())


def _no_progress(label: str, total: int, unit: str) -> AbstractContextManager[Any]:
    class _Quiet:
        def update(self, n: int) -> None:
            return

    return nullcontext(_Quiet())


def open_blob_store(url: str) -> BlobStore:
    """The blob store ``--blobs`` names: ``s3://BUCKET/PREFIX`` (its bucket and credentials
    checked, see ``S3BlobStore.check_bucket``) or ``file:///PATH``."""
    if urlsplit(url.strip()).scheme == "s3":
        from artifactfs.store.s3 import S3BlobStore  # boto3 only when asked for

        return S3BlobStore.from_url(url)
    return BlobDir(blobs_folder(url).expanduser())


def snapshot_database(source_dir: Path, into: Path) -> Path:
    """A consistent copy of the store folder's database in ``into`` (SQLite's backup API:
    the committed state, whatever a writer is doing), which the caller may upgrade."""
    db_file = source_dir / "registry.sqlite3"
    if not db_file.is_file():
        raise InvalidName(f"{source_dir} is not a store folder (no registry.sqlite3 in it)")
    copy = into / "registry.sqlite3"
    src = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        raise InvalidName(f"{db_file}: cannot read it as a SQLite database: {exc}") from None
    finally:
        src.close()
    return copy


def _row_key(table: sa.Table, row: sa.Row[Any]) -> tuple[Any, ...]:
    return tuple(row._mapping[c.name] for c in table.primary_key.columns)


def _row_hash(row: sa.Row[Any]) -> bytes:
    """A fingerprint of a row's values: comparing these, not the rows, keeps a check of a
    million folder rows to a few dozen bytes a row in memory."""
    return hashlib.blake2b(repr(tuple(row)).encode("utf-8", "surrogatepass"),
                           digest_size=16).digest()


def _stream(engine: Engine, statement: Any) -> Iterator[sa.Row[Any]]:
    """The rows of a read a few at a time (a server-side cursor on PostgreSQL,
    which lives only in a transaction: the engine itself is in autocommit)."""
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            result = conn.execution_options(stream_results=True, yield_per=_FETCH).execute(
                statement)
            yield from result


def _missing_rows(source: Engine, target: Engine | None,
                  report: MigrationReport) -> dict[str, set[tuple[Any, ...]]]:
    """The key of every source row the target lacks, per table. Raises Conflict, having
    written nothing, when the target holds a row the source does not, or one that differs."""
    missing: dict[str, set[tuple[Any, ...]]] = {}
    for table in TABLES:
        ordered = sa.select(table).order_by(*table.primary_key.columns)
        held: dict[tuple[Any, ...], bytes] = {}
        if target is not None:
            held = {_row_key(table, row): _row_hash(row)
                    for row in _stream(target, sa.select(table))}
        absent: set[tuple[Any, ...]] = set()
        present = 0
        for row in _stream(source, ordered):
            key = _row_key(table, row)
            there = held.pop(key, None)
            if there is None:
                absent.add(key)
            elif there != _row_hash(row):
                raise Conflict(
                    f"the target database already holds different data: {table.name} "
                    f"row {_shown_key(table, key)} differs from the source's; migrate into an "
                    f"empty database")
            else:
                present += 1
        if held:
            raise Conflict(
                f"the target database already holds different data: {len(held)} "
                f"{table.name} row(s) the source does not have (e.g. "
                f"{_shown_key(table, next(iter(held)))}); migrate into an empty database")
        missing[table.name] = absent
        report.rows_present[table.name] = present
    return missing


def _shown_key(table: sa.Table, key: tuple[Any, ...]) -> str:
    return ", ".join(f"{c.name}={v!r}" for c, v in zip(table.primary_key.columns, key,
                                                          strict=True))


def _copy_rows(source: Engine, target: Engine, missing: dict[str, set[tuple[Any, ...]]],
               progress: Progress, report: MigrationReport) -> None:
    total = sum(len(keys) for keys in missing.values())
    # the target's engine is in autocommit: each batch gets a transaction of its own here
    writer = target.execution_options(isolation_level="READ COMMITTED") \
        if target.dialect.name != "sqlite" else target
    with progress("rows", total, "row") as bar:
        for table in TABLES:
            wanted = missing[table.name]
            report.rows_copied[table.name] = 0
            if not wanted:
                continue
            batch: list[dict[str, Any]] = []

            def flush() -> None:
                with writer.begin() as conn:
                    conn.execute(table.insert(), batch)  # noqa: B023 (run at once)
                report.rows_copied[table.name] += len(batch)  # noqa: B023
                bar.update(len(batch))  # noqa: B023
                batch.clear()  # noqa: B023

            ordered = sa.select(table).order_by(*table.primary_key.columns)
            weight = 0
            for row in _stream(source, ordered):
                if _row_key(table, row) in wanted:
                    batch.append(dict(row._mapping))
                    weight += sum(len(v) for v in row if isinstance(v, str))
                    if len(batch) >= _ROW_BATCH or weight >= _BATCH_TEXT:
                        flush()
                        weight = 0
            if batch:
                flush()
    if target.dialect.name == "postgresql":
        with writer.begin() as conn:
            for table in _SERIAL:
                # the next id the database makes comes after every copied one
                conn.execute(sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table.name}"))


def _copy_blobs(source: BlobDir, target: BlobStore | None, *, dry_run: bool, workers: int,
                progress: Progress, report: MigrationReport) -> None:
    digests = list(source.keys())
    todo = [(digest, source.size(digest)) for digest in digests]
    lock = threading.Lock()
    with progress("blobs", sum(size for _, size in todo), "B") as bar:

        def advance(n: int) -> None:
            with lock:
                bar.update(n)

        def copy(item: tuple[str, int]) -> None:
            digest, size = item
            there: int | None = None
            md5: str | None = None
            if target is not None:  # None: a dry run's target folder, not made yet
                try:
                    there, md5 = target.size_and_md5(digest)  # one round trip
                except NotFound:
                    pass
            if there == size and md5 in (None, blob_key(digest)):
                with lock:
                    report.blobs_skipped += 1
                    report.target_sizes[digest] = size
                    bar.update(size)
                return
            if dry_run:
                with lock:
                    report.blobs_copied += 1
                    report.bytes_copied += size
                return
            assert target is not None
            stream = source.open_range(digest, 0, size)
            try:
                # the writer checks the bytes against the key and builds the chunk index
                target.put_stream(stream, digest, on_bytes=advance)  # type: ignore[arg-type]
            except DigestMismatch:
                with lock:
                    report.damaged.append(digest)
                return
            finally:
                stream.close()
            with lock:
                report.blobs_copied += 1
                report.bytes_copied += size
                report.target_sizes[digest] = size

        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            for _ in pool.map(copy, todo):
                pass
        finally:
            # after a failure (storage refusing, ^C) the blobs not started are dropped, not
            # each tried and failed in turn
            pool.shutdown(wait=True, cancel_futures=True)


def _verify(source: Engine, target: Engine, source_blobs: BlobDir, target_blobs: BlobStore,
            report: MigrationReport) -> None:
    for table in TABLES:
        count = sa.select(sa.func.count()).select_from(table)
        with source.connect() as s, target.connect() as t:
            want, got = s.execute(count).scalar_one(), t.execute(count).scalar_one()
        if want != got:
            report.problems.append(f"{table.name}: {got} rows at the target, {want} at the "
                                   f"source")
    recorded = {row.id: row.digest for row in _stream(
        source, sa.select(versions.c.id, versions.c.digest))}
    stored: dict[str, int] = {}
    for row in _stream(target, sa.select(versions.c.id, versions.c.digest,
                                         versions.c.manifest)):
        report.versions_checked += 1
        try:
            manifest = Manifest.from_json(row.manifest)
        except InvalidManifest as exc:
            report.problems.append(f"version {row.id}: its manifest does not read: {exc}")
            continue
        if manifest.digest() != recorded.get(row.id) or row.digest != recorded.get(row.id):
            report.problems.append(f"version {row.id}: manifest digest {manifest.digest()}, "
                                   f"the source recorded {recorded.get(row.id)}")
        for entry in manifest:
            if entry.ref is None and SYMLINK_EXTRA_KEY not in entry.extra:
                stored[entry.stored_digest or entry.digest] = entry.size
    # a blob this run copied (checked by the writer) or found there is not asked again
    seen = report.target_sizes
    sizes = {**target_blobs.sizes(d for d in stored if d not in seen), **seen}
    report.blobs_checked = len(stored)
    for digest, size in sorted(stored.items()):
        if sizes.get(digest) != size:
            found = sizes.get(digest)
            report.problems.append(f"blob {digest}: " + (
                "missing at the target" if found is None else f"{found} bytes, not {size}"))
        elif size > CHUNK_SIZE:
            # the index a chunked read trusts: built from the bytes at the target, it must be
            # the source's (a blob's whole-file MD5 says nothing about a chunk's hash)
            try:
                same = target_blobs.chunk_index(digest) == source_blobs.chunk_index(digest)
            except (NotFound, DigestMismatch) as exc:
                report.problems.append(f"blob {digest}: its chunk index: {exc}")
                continue
            report.indexes_checked += 1
            if not same:
                report.problems.append(f"blob {digest}: its chunk index at the target is "
                                       f"not the source's")


def _absent(url: URL | None, blobs_url: str | None) -> bool:
    """Whether a SQLite database file, or a blob folder, is not there yet."""
    if url is not None:
        return url.get_backend_name() == "sqlite" and not Path(url.database or "").exists()
    assert blobs_url is not None
    if urlsplit(blobs_url.strip()).scheme == "s3":
        return False
    return not blobs_folder(blobs_url).expanduser().exists()


def migrate_store(source_dir: Path, db_url: str, blobs_url: str, *, dry_run: bool = False,
                  workers: int = 8, progress: Progress = _no_progress) -> MigrationReport:
    """Copy the store folder ``source_dir`` into database ``db_url`` and blob store
    ``blobs_url`` (see the module's docstring). Raises Conflict when the target database
    holds other data, InvalidName for a bad folder or URL, SchemaMismatch for a source
    newer than this code, RegistryUnavailable when a target cannot be reached."""
    try:
        return _migrate(source_dir, db_url, blobs_url, dry_run=dry_run, workers=workers,
                        progress=progress)
    except sa.exc.IntegrityError as exc:  # a writer at the target while this one copies
        raise Conflict(f"the target database changed during the copy ({_first_line(exc)}); "
                       f"stop what writes to it and run migrate again") from None
    except sa.exc.DBAPIError as exc:  # the database went away part way
        raise RegistryUnavailable(f"the database failed part way ({_first_line(exc)}); "
                                  f"run migrate again to carry on") from None


def _first_line(exc: sa.exc.DBAPIError) -> str:
    # the driver's message, not SQLAlchemy's (which adds the statement); parameters are
    # hidden by the engines anyway
    return (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]


def _migrate(source_dir: Path, db_url: str, blobs_url: str, *, dry_run: bool, workers: int,
             progress: Progress) -> MigrationReport:
    source_dir = source_dir.expanduser()
    url = parse_db_url(db_url)
    report = MigrationReport()
    with tempfile.TemporaryDirectory(prefix="artifactfs-migrate-") as tmp:
        source_db = MetadataDB(snapshot_database(source_dir, Path(tmp)), upgrade=True)
        target_db: MetadataDB | None = None
        target_blobs: BlobStore | None = None
        try:
            if url == sqlite_url(source_dir / "registry.sqlite3"):
                raise InvalidName("the target database is the source's own")
            # the blob store first: a wrong bucket or key (checked as it opens) is refused
            # before the target database is given a schema
            if not (dry_run and _absent(None, blobs_url)):
                target_blobs = open_blob_store(blobs_url)
            # a dry run makes nothing: a SQLite file or blob folder not there yet is empty
            if not (dry_run and _absent(url, None)):
                try:
                    target_db = MetadataDB(url, upgrade=not dry_run)
                except SchemaMismatch:
                    if not dry_run:
                        raise
                    # an empty (or older) database: a real run gives it the schema first
            missing = _missing_rows(source_db.engine,
                                    target_db.engine if target_db else None, report)
            source_blobs = BlobDir(source_dir)
            _copy_blobs(source_blobs, target_blobs, dry_run=dry_run, workers=workers,
                        progress=progress, report=report)
            if dry_run:
                report.rows_copied = {name: len(keys) for name, keys in missing.items()}
                return report
            assert target_db is not None and target_blobs is not None
            _copy_rows(source_db.engine, target_db.engine, missing, progress, report)
            _verify(source_db.engine, target_db.engine, source_blobs, target_blobs, report)
        finally:
            source_db.close()
            if target_db is not None:
                target_db.close()
            if target_blobs is not None:
                target_blobs.close()
    return report

