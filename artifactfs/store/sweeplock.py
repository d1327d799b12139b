"""The lock that keeps ``artifactfs gc`` from removing a blob a commit is about to reference.

A commit checks that its blobs are stored, then (a moment or, for a million entries, seconds
later) inserts its version. A sweep that removed one of those blobs in between would leave a
version naming bytes that are gone, and no check at the commit's start can see it coming. So
a commit holds this lock *shared* from its check of the blobs until its version is in the
database, and gc holds it *exclusive* while it looks once more at what it is about to remove
and removes it: either the version is in the database by then (and gc keeps its blobs), or
the commit checks after the blobs are gone (and fails, naming the blob to upload again).
Commits never wait for each other on it.

The lock lives where every writer of the store already meets: beside a SQLite database a
file (``flock``; every writer of a SQLite database is on its machine), and in PostgreSQL an
advisory lock (``pg_advisory_lock_shared``), so commits on every server replica take part.
gc asks for it without queueing (a try-lock, polled): an exclusive request that waited in
line would stop every commit behind it while a slow one finished.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from artifactfs.core.errors import RegistryUnavailable
from artifactfs.store.database import create_db_engine, unavailable_errors

__all__ = ["SweepLock", "sweep_lock"]

# an arbitrary 64-bit key of this lock among the database's advisory locks ("afs-gc")
_PG_KEY = 0x6166732D6763


class SweepLock(abc.ABC):
    """Shared for commits, exclusive for a sweep (see the module)."""

    @abc.abstractmethod
    def shared(self) -> contextlib.AbstractContextManager[None]:
        """Held by a commit from its check of the blobs until its version is stored."""

    @abc.abstractmethod
    def exclusive(self, *, poll: float = 0.02) -> contextlib.AbstractContextManager[None]:
        """Held once no commit holds it shared; polls rather than queues."""


class _FileLock(SweepLock):
    def __init__(self, path: Path) -> None:
        self.path = path

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RegistryUnavailable(f"cannot open the gc lock {self.path}: {exc.strerror}"
                                      ) from None

    @contextmanager
    def shared(self) -> Iterator[None]:
        fd = self._open()  # one open file per holder: flock locks belong to it, not the thread
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def exclusive(self, *, poll: float = 0.02) -> Iterator[None]:
        fd = self._open()
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(poll)
            yield
        finally:
            os.close(fd)


class _AdvisoryLock(SweepLock):
    """On connections of a pool of its own: a commit holds one while it checks out another
    for its transaction, and sharing one pool, 40 commits at once (the server's threads)
    would each hold a lock connection and wait for a second that never comes. Its
    connections are pinged at checkout (a round trip beside a commit's dozen): after
    PostgreSQL restarted, the first commit would otherwise meet a connection the restart
    closed and fail."""

    def __init__(self, engine: Engine) -> None:
        self._url = engine.url
        self._engine: Engine | None = None
        self._made = threading.Lock()

    @property
    def engine(self) -> Engine:
        with self._made:
            if self._engine is None:  # made at the first commit: a reader never needs it
                self._engine = create_db_engine(self._url, pre_ping=True)
            return self._engine

    @contextmanager
    def _session(self) -> Iterator[Connection]:
        with unavailable_errors(self._url), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._session() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock_shared({_PG_KEY})")
            try:
                yield
            finally:
                _release(conn, f"SELECT pg_advisory_unlock_shared({_PG_KEY})")

    @contextmanager
    def exclusive(self, *, poll: float = 0.02) -> Iterator[None]:
        with self._session() as conn:
            while not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({_PG_KEY})").scalar():
                time.sleep(poll)
            try:
                yield
            finally:
                _release(conn, f"SELECT pg_advisory_unlock({_PG_KEY})")


def _release(conn: Connection, statement: str) -> None:
    """Release an advisory lock. A connection lost meanwhile (PostgreSQL stopped, say) has
    lost the lock with it: nothing to release, and the connection is not pooled again,
    where its reset on return would fail and log a traceback."""
    try:
        conn.exec_driver_sql(statement)
    except sa_exc.DBAPIError:
        conn.invalidate()


def sweep_lock(engine: Engine) -> SweepLock:
    """The sweep lock of the store whose database ``engine`` opens."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        assert database, "a SQLite store has a database file"
        return _FileLock(Path(database).with_name(Path(database).name + ".gc-lock"))
    return _AdvisoryLock(engine)
