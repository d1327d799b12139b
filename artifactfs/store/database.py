"""A store's database by URL: SQLite or PostgreSQL, and its schema kept in step with the code.

URLs (``--db``, ``ARTIFACTFS_DB``):

- ``sqlite:///PATH`` (``sqlite:////abs/path``): the embedded form; ``--store DIR`` means
  ``sqlite:///DIR/registry.sqlite3``.
- ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB``, driven by psycopg 3 (``?host=/socket/dir``
  reaches a unix socket). A password never leaves this module unmasked: every message and
  log line shows the URL as ``shown_url`` renders it (``***``).

The schema (``schema.py``) comes from the Alembic revisions in ``migrations/``, run from
here on a connection this module holds, so no ``alembic.ini`` is needed. What opening a
database does (``open_database``):

- at the head revision: nothing more (one query, and Alembic is not even imported);
- at a revision this code does not know, or a pre-Alembic ``user_version`` past 3: refused
  (``SchemaMismatch``), since a newer artifactfs wrote it and its rows may mean what this
  code cannot keep;
- older (or empty): upgraded at once when ``upgrade`` is true (the embedded SQLite store,
  as before Alembic), else refused with the command that upgrades it (PostgreSQL: a team's
  server upgrades on an operator's say, ``artifactfs db upgrade --db URL``, never because
  one replica of a newer release started);
- a store made before Alembic (tables, no ``alembic_version``) is adopted: brought to schema
  3 by its own steps (``legacy.py``), stamped at the first revision, then upgraded.

Upgrades run one at a time: on SQLite under the ``.init.lock`` file lock that every process
opening the store takes (WAL mode and DDL take locks SQLite does not wait for), on
PostgreSQL under a transaction-level advisory lock; each in one transaction, so a crash
leaves the schema as it was.

A database that cannot be used now (PostgreSQL stopped, restarting or out of reach, a
connection dropped, a SQLite file locked past the busy timeout or its disk failing) raises
``DatabaseUnavailable``, one line naming the database and what to do, whichever way the
error came: from the driver's cursor (``MetadataDB`` runs its statements there, so
``psycopg`` and ``sqlite3`` raise their own exceptions) or through SQLAlchemy (connecting,
its pool, the statements it runs itself). ``database_unavailable`` tells which errors those
are, and ``unavailable_errors`` raises it; a constraint or a bad statement is not one.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url

from artifactfs.core.errors import DatabaseUnavailable, InvalidName, SchemaMismatch
from artifactfs.store.legacy import LEGACY_SCHEMA, bring_to_schema_3
from artifactfs.store.schema import HEAD_REVISION

__all__ = [
    "SQLITE_BUSY_TIMEOUT",
    "SchemaState",
    "blobs_folder",
    "check_schema",
    "create_db_engine",
    "database_unavailable",
    "make_sqlite_folder",
    "open_database",
    "parse_db_url",
    "schema_state",
    "shown_url",
    "sqlite_url",
    "unavailable_errors",
    "upgrade_database",
]

log = logging.getLogger(__name__)

FIRST_REVISION = "0001_schema_3"
"""The revision a pre-Alembic store at schema 3 is stamped at (it creates those tables)."""

_MIGRATIONS = Path(__file__).with_name("migrations")
# any 64-bit number, the same in every release: `db upgrade` runs on two hosts wait in turn
_UPGRADE_LOCK_ID = 0x61_66_73_5F_64_62  # "afs_db"
# SQLite: a server runs its blocking calls in up to 40 threads (anyio's default), each of
# which would otherwise open (and PRAGMA) a connection per call past the pool
_SQLITE_POOL = 40
# PostgreSQL: the same 40 threads, fewer kept idle; the server's default max_connections
# (100) holds two replicas of 40
_PG_POOL, _PG_OVERFLOW = 10, 30
_FORMS = "sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
SQLITE_BUSY_TIMEOUT = 60.0
"""Seconds a SQLite writer waits for another's write lock before giving up (``database is
locked``): a commit of a million entries holds it for seconds, so generously more than that.
``sqlite:///PATH?timeout=SECONDS`` sets another."""
# SQLite's primary result codes (the low byte of ``sqlite_errorcode``) that say the file
# cannot be used now rather than that a statement is wrong: BUSY and LOCKED (a lock held
# past the busy timeout), and NOMEM, READONLY (a file or folder this process may not
# write), IOERR, FULL, CANTOPEN, PROTOCOL
_SQLITE_LOCKED = frozenset({5, 6})
_SQLITE_UNUSABLE = frozenset({7, 8, 10, 13, 14, 15})
# PostgreSQL's SQLSTATE classes that say the server cannot serve now, not that a request is
# wrong: 08 connection exception, 28 authorization (a password changed under a running
# server), 40 transaction rollback (a deadlock or serialization failure: the same request
# again succeeds), 53 insufficient resources (disk full, too many connections), 57 operator
# intervention (shutting down, "the database system is starting up", a crash), 58 system
# error (I/O). An error without a SQLSTATE is the client's own: no connection, or it broke.
_PG_UNAVAILABLE = frozenset({"08", "28", "40", "53", "57", "58"})
# see _pg_connect_args
_PG_LIBPQ_DEFAULTS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
                      "keepalives_interval": 10, "keepalives_count": 6}
_PG_SESSION_DEFAULTS = {"tcp_keepalives_idle": 60, "tcp_keepalives_interval": 10,
                        "tcp_keepalives_count": 6}


def _lenient_text(raw: bytes) -> str:
    """A TEXT value as SQLite gives it back. What this code writes is always UTF-8; a damaged
    or hand-edited row may not be, and decoding it strictly failed every read of that row
    (and of its collection): its bad bytes read as U+FFFD instead."""
    return raw.decode("utf-8", "replace")


def parse_db_url(text: str) -> URL:
    """The SQLAlchemy URL of ``sqlite:///PATH`` or ``postgresql://...`` (psycopg 3).

    Raises InvalidName, without echoing the text (it may hold a password), when it is
    neither.
    """
    try:
        url = make_url(text.strip())
    except (exc.ArgumentError, ValueError):
        raise InvalidName(f"the database URL is not of the form {_FORMS}") from None
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend == "sqlite" and driver in ("pysqlite", "sqlite"):
        if not url.database or url.database == ":memory:":
            raise InvalidName("a sqlite database URL names a file: sqlite:///PATH")
        found = sqlite_url(Path(url.database))
        timeout = url.query.get("timeout")
        if timeout is not None:  # the busy timeout, the one query a SQLite URL keeps
            try:
                seconds = float(str(timeout))
            except ValueError:
                seconds = -1.0
            if not 0 < seconds < float("inf"):
                raise InvalidName("timeout= of a sqlite URL is the seconds a writer waits for "
                                  "another's lock, such as ?timeout=5")
            found = found.update_query_dict({"timeout": f"{seconds:g}"})
        return found
    if backend in ("postgresql", "postgres") and driver in ("psycopg", "psycopg2", "postgres"):
        if not url.database:
            raise InvalidName(f"{shown_url(url)} names no database; add /DB")
        return url.set(drivername="postgresql+psycopg")
    raise InvalidName(f"database URLs of scheme {url.drivername!r} are not supported; "
                      f"use {_FORMS}")


def sqlite_url(path: Path) -> URL:
    """The URL of a SQLite file (built, not parsed, so any character in the path is kept)."""
    return URL.create("sqlite", database=str(path.expanduser()))


def make_sqlite_folder(url: URL) -> None:
    """Make the folder of a SQLite database file if it is not there, as opening a store
    folder always made it. Raises InvalidName when it cannot be made."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return
    folder = Path(url.database).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidName(f"cannot use {folder} as the database's folder: {exc.strerror}") from None


def shown_url(url: URL | str) -> str:
    """A database URL fit for a message or a log line: its password as ``***``."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (exc.ArgumentError, ValueError):
            return "(a database URL)"
    url = url.set(drivername=url.get_backend_name())
    return url.render_as_string(hide_password=True)


def blobs_folder(text: str) -> Path:
    """The folder ``file:///PATH`` names (``--blobs``, ``ARTIFACTFS_BLOBS``).

    Raises InvalidName for any other form (``Store`` takes ``s3://`` before asking).
    """
    parts = urlsplit(text.strip())
    if parts.scheme == "file" and parts.netloc in ("", "localhost") and parts.path:
        return Path(unquote(parts.path))
    raise InvalidName("the blobs URL is not of the form file:///PATH or s3://BUCKET/PREFIX")


def create_db_engine(url: URL, *, pre_ping: bool = False) -> Engine:
    """An engine for ``url`` with this project's connection rules.

    SQLite: WAL and a generous busy timeout (``SQLITE_BUSY_TIMEOUT``, or the URL's
    ``timeout``), so readers never block writers and writers queue; autocommit at the
    driver, so a read takes no lock, and ``MetadataDB`` opens every write with ``BEGIN
    IMMEDIATE`` itself (the write lock before the first read).
    PostgreSQL: autocommit too, so a read is one round trip (not BEGIN, the query and
    the ROLLBACK a returned connection gets), and ``MetadataDB`` opens every write with
    BEGIN; no ping at checkout (one round trip more per call) unless ``pre_ping``: a
    connection found dead drops the pool's others with it instead (``MetadataDB._connection``).
    Both: statement parameters never appear in an error (they hold key hashes).
    """
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": _busy_timeout(url)},
                                  pool_size=_SQLITE_POOL, max_overflow=-1,
                                  hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.text_factory = _lenient_text
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

        return engine
    return sa.create_engine(url, pool_size=_PG_POOL, max_overflow=_PG_OVERFLOW,
                            isolation_level="AUTOCOMMIT", hide_parameters=True,
                            pool_pre_ping=pre_ping, connect_args=_pg_connect_args(url))


def _pg_connect_args(url: URL) -> dict[str, Any]:
    """Bounds on a connection to a peer that vanished (its machine off, the network cut),
    where neither side is told and TCP alone waits for hours; the URL's own settings win.

    - ``connect_timeout``: a database host that drops packets fails a connect in seconds,
      not after the kernel's two minutes of retries.
    - ``keepalives*`` (libpq, this side): a connection to a vanished database is found dead
      in about a minute and a half.
    - ``tcp_keepalives_*`` (PostgreSQL's, set for the session): the database finds a
      vanished replica dead in about two minutes and ends its sessions, so that its open
      transaction (holding a collection's row lock) and its share of gc's lock go; a replica
      killed is found at once, one whose machine vanished was otherwise held for hours.
    """
    given = set(url.query)
    args: dict[str, Any] = {k: v for k, v in _PG_LIBPQ_DEFAULTS.items() if k not in given}
    ours = " ".join(f"-c {name}={value}" for name, value in _PG_SESSION_DEFAULTS.items())
    theirs = url.query.get("options")
    # the URL's options come last: PostgreSQL takes the last of a setting given twice
    args["options"] = f"{ours} {theirs}" if isinstance(theirs, str) and theirs else ours
    return args


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


def _busy_timeout(url: URL) -> float:
    return float(str(url.query.get("timeout") or SQLITE_BUSY_TIMEOUT))


def database_unavailable(err: BaseException, url: URL) -> DatabaseUnavailable | None:
    """``err`` as the DatabaseUnavailable it means when it says that the database of
    ``url`` cannot be used now (the codes above), else None: an integrity or constraint
    error, a bad statement or a bug stays what it is.

    ``err`` is a driver's own exception (``psycopg``, ``sqlite3``: statements run on the
    driver's cursor) or SQLAlchemy's, which wraps one (connecting, and what it runs itself),
    or its pool's (every connection in use past the pool's timeout).
    """
    driver: BaseException | None = err
    if isinstance(err, exc.DBAPIError):
        driver = err.orig
        if err.connection_invalidated:  # SQLAlchemy found the connection dead
            return _unavailable(url, _driver_line(driver, url))
    elif isinstance(err, (exc.TimeoutError, exc.DisconnectionError)):
        return DatabaseUnavailable(
            f"the database {shown_url(url)} has no connection free: every one of this "
            "process's is in use; try again shortly")
    if isinstance(driver, sqlite3.Error):
        code = getattr(driver, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary in _SQLITE_LOCKED or primary in _SQLITE_UNUSABLE:
            return _unavailable(url, _driver_line(driver, url), locked=primary in _SQLITE_LOCKED)
        return None
    # psycopg is imported only where a PostgreSQL engine was made, and raised this if so
    psycopg: Any = sys.modules.get("psycopg")
    if psycopg is None or driver is None:
        return None
    if isinstance(driver, psycopg.InterfaceError) or (
            isinstance(driver, psycopg.OperationalError)
            and (driver.sqlstate is None or driver.sqlstate[:2] in _PG_UNAVAILABLE)):
        return _unavailable(url, _driver_line(driver, url))
    return None


def _unavailable(url: URL, said: str, *, locked: bool = False) -> DatabaseUnavailable:
    """The one line for a database that cannot be used now: which one, what its driver
    said, and what to do."""
    if url.get_backend_name() != "sqlite":
        return DatabaseUnavailable(
            f"the database {shown_url(url)} cannot be used now ({said}); check that "
            "PostgreSQL is running and reachable from this machine, then try again")
    path = url.database
    if locked:
        return DatabaseUnavailable(
            f"the database {path} is locked: another process has held its write lock "
            f"longer than the {_busy_timeout(url):g} s this one waits (a long commit or gc, "
            f"or a process stuck holding it); try again, or find it with: fuser {path}")
    return DatabaseUnavailable(
        f"the database {path} cannot be used ({said}); check its disk, the free space and "
        "the permissions of the file and its folder")


@contextmanager
def unavailable_errors(url: URL) -> Iterator[None]:
    """Raise DatabaseUnavailable (one line: no password, no SQL, no traceback) for an error
    of the block that says the database of ``url`` cannot be used now; any other passes."""
    try:
        yield
    except Exception as err:
        found = database_unavailable(err, url)
        if found is None:
            raise
        raise found from None


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What a database holds: its Alembic revision, and for SQLite its ``user_version``."""

    revision: str | None
    user_version: int | None
    has_tables: bool

    def describe(self) -> str:
        if self.revision is not None:
            return f"revision {self.revision}"
        if self.has_tables:
            return f"pre-Alembic schema {self.user_version or 0}"
        return "empty (no schema)"


def schema_state(conn: Connection) -> SchemaState:
    """Read where ``conn``'s database is, without Alembic."""
    names = set(sa.inspect(conn).get_table_names())
    revision = None
    if "alembic_version" in names:
        found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
        revision = ",".join(sorted(found)) or None
    user_version = None
    if is_sqlite(conn):
        user_version = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
    return SchemaState(revision, user_version, "entities" in names)


def _known_revisions() -> list[str]:
    """Every revision this code ships, oldest first."""
    with _quiet_alembic():  # its imports log too
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(_MIGRATIONS))
        return [s.revision for s in reversed(list(script.walk_revisions()))]


def _refuse_newer(state: SchemaState, where: str) -> None:
    """Raise SchemaMismatch when a newer artifactfs wrote this schema."""
    if state.revision is None:
        if state.has_tables and (state.user_version or 0) > LEGACY_SCHEMA:
            raise SchemaMismatch(
                f"{where} has schema {state.user_version}, newer than this artifactfs knows "
                f"({LEGACY_SCHEMA}); upgrade artifactfs to use it")
        return
    if state.revision != HEAD_REVISION and state.revision not in _known_revisions():
        raise SchemaMismatch(
            f"{where} has schema revision {state.revision}, newer than this artifactfs "
            f"knows ({HEAD_REVISION}); upgrade artifactfs to use it")


@contextmanager
def _init_lock(engine: Engine) -> Iterator[None]:
    """SQLite: the store's init lock file, held while the schema is looked at or changed.
    Several processes may open a new store at once: switching to WAL and creating tables
    take locks SQLite does not wait for, so they go one at a time."""
    database = engine.url.database
    if not is_sqlite(engine) or not database:
        yield
        return
    path = Path(database)
    lock_path = path.with_name(path.name + ".init.lock")
    try:
        lock = open(lock_path, "a")  # noqa: SIM115 - closed below
    except OSError as err:
        raise InvalidName(f"cannot open the store's lock file {lock_path}: {err.strerror}"
                          ) from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def _reached(engine: Engine) -> Iterator[None]:
    """Turn a database that cannot be opened or reached into one clear line (no password,
    no SQL, no traceback)."""
    try:
        yield
    except exc.OperationalError as err:
        raise DatabaseUnavailable(
            f"cannot open the database {shown_url(engine.url)}: "
            f"{_driver_line(err.orig, engine.url)}") from None


def _driver_line(err: BaseException | None, url: URL) -> str:
    """The driver's own message, first line (SQLAlchemy's adds the SQL and a link)."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    if url.password:  # never seen in psycopg's messages, but a message is no place to trust
        text = text.replace(str(url.password), "***")
    return text


def upgrade_command(url: URL) -> str:
    """The command that upgrades the database of ``url``, for messages."""
    return f"artifactfs db upgrade --db {shown_url(url)}"


def open_database(engine: Engine, *, upgrade: bool) -> SchemaState:
    """Check (and with ``upgrade``, bring up) the schema of ``engine``'s database at open.

    Returns the state found. Raises SchemaMismatch for a newer schema, or for an older or
    empty one without ``upgrade``; RegistryUnavailable when the database cannot be reached.
    """
    where = f"the database {shown_url(engine.url)}"
    with _reached(engine), _init_lock(engine):
        with engine.connect() as conn:
            state = schema_state(conn)
        if state.revision == HEAD_REVISION:
            return state
        _refuse_newer(state, where)
        if not upgrade:
            raise SchemaMismatch(
                f"{where} is at {state.describe()}; this artifactfs needs revision "
                f"{HEAD_REVISION}; run: {upgrade_command(engine.url)}")
        _upgrade_locked(engine, where)
    return state


def check_schema(engine: Engine) -> tuple[SchemaState, str, bool]:
    """``artifactfs db status``: the state, what it means, and whether it is current."""
    where = f"the database {shown_url(engine.url)}"
    with _reached(engine), engine.connect() as conn:
        state = schema_state(conn)
    if state.revision == HEAD_REVISION:
        return state, "current (this artifactfs's schema)", True
    try:
        _refuse_newer(state, where)
    except SchemaMismatch:
        return state, "newer than this artifactfs knows; upgrade artifactfs", False
    return state, (f"this artifactfs needs revision {HEAD_REVISION}; run: "
                   f"{upgrade_command(engine.url)}"), False


def upgrade_database(engine: Engine) -> tuple[SchemaState, SchemaState]:
    """``artifactfs db upgrade``: bring the database to the head revision; the states
    before and after. Raises SchemaMismatch for a schema newer than this code."""
    where = f"the database {shown_url(engine.url)}"
    with _reached(engine), _init_lock(engine):
        with engine.connect() as conn:
            before = schema_state(conn)
        _refuse_newer(before, where)
        if before.revision != HEAD_REVISION:
            _upgrade_locked(engine, where)
        with engine.connect() as conn:
            after = schema_state(conn)
    return before, after


def _upgrade_locked(engine: Engine, where: str) -> None:
    """Adopt a pre-Alembic store if this is one, then run the revisions up to head, all in
    one transaction (the caller holds the SQLite init lock; PostgreSQL's lock is taken
    here)."""
    with _quiet_alembic():
        _run_revisions(engine, where)
    log.info("%s: schema upgraded to revision %s", where, HEAD_REVISION)


def _run_revisions(engine: Engine, where: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.connect() as conn:
        if not is_sqlite(conn):  # one transaction, not the engine's autocommit
            conn.execution_options(isolation_level="READ COMMITTED")
        if is_sqlite(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _UPGRADE_LOCK_ID})
        try:
            state = schema_state(conn)  # again, under the lock: another process may have won
            _refuse_newer(state, where)
            config.attributes["connection"] = conn
            if state.revision is None and state.has_tables:
                if not is_sqlite(conn):
                    raise SchemaMismatch(
                        f"{where} holds tables but no schema revision; it was not made by "
                        "artifactfs")
                raw = conn.connection.dbapi_connection
                assert isinstance(raw, sqlite3.Connection)
                had = bring_to_schema_3(raw)
                command.stamp(config, FIRST_REVISION)
                log.info("%s: adopted the pre-Alembic schema %d as revision %s", where, had,
                         FIRST_REVISION)
            command.upgrade(config, "head")
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def _quiet_alembic() -> Any:
    """Alembic logs each step (and each plugin it loads) at INFO on its own logger; the
    store logs one line instead, and a command's one-line error stays one line."""
    logger = logging.getLogger("alembic")
    if logger.level != logging.NOTSET:
        return nullcontext()

    @contextmanager
    def quiet() -> Iterator[None]:
        logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(logging.NOTSET)

    return quiet()
