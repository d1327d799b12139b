"""Runs and lineage in the store's database: the ``runs`` and ``run_links`` tables.

Kept beside ``MetadataDB`` rather than in it, as its own small set of statements and
methods, on the same connections and transactions (``MetadataDB._read``/``_write``/
``_fetch``), so that the same concurrency rules hold: a link to a version is made under the
lock of that version's collection (``MetadataDB._lock_committed``), so it cannot be made to
a version that a delete is marking DELETED meanwhile, on PostgreSQL as on SQLite.

A version may be logged by more than one run: a commit of content a version of the
collection holds already answers with that version (as W&B's does), so a second run that
makes the same files logs the same version. Its producer (``Artifact.logged_by()``) is the
first run that logged it; the others are recorded too, as the runs that made it again.

Every method takes the entity asking: a run of another entity is NotFound, as an artifact
of another entity is, and a link joins a run and a version of one entity only.
"""

from __future__ import annotations

import importlib
import json
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql.expression import Insert, Select, Update

from artifactfs.core.errors import Conflict, NotFound
from artifactfs.core.limits import check_text, load_stored_json
from artifactfs.core.names import validate_name
from artifactfs.core.records import COMMITTED, VersionInfo
from artifactfs.core.runs import (
    LOGGED,
    RUNNING,
    RunInfo,
    check_config,
    new_run_id,
    validate_link,
    validate_run_id,
    validate_run_state,
)
from artifactfs.store import queries as q
from artifactfs.store.schema import run_links, runs, versions

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from artifactfs.store.metadata import MetadataDB

__all__ = ["RunRecords"]

_b = sa.bindparam
_r, _l = runs, run_links
_RUN_COLUMNS = (_r.c.id, _r.c.entity, _r.c.project, _r.c.name, _r.c.job_type, _r.c.state,
                _r.c.created_at, _r.c.finished_at, _r.c.config)

RUN: Select[Any] = sa.select(*_RUN_COLUMNS).where(_r.c.id == _b("run"))
FINISH: Update = _r.update().where(_r.c.id == _b("run"), _r.c.state == RUNNING).values(
    state=_b("state"), finished_at=_b("now"))
HAS_LINK: Select[Any] = sa.select(_l.c.run_id).where(
    _l.c.run_id == _b("run"), _l.c.kind == _b("kind"), _l.c.version_id == _b("vid"))
ADD_LINK: Insert = run_links.insert()
RUNS_OF_VERSION: Select[Any] = (
    sa.select(*_RUN_COLUMNS).join(_l, _l.c.run_id == _r.c.id)
    .where(_l.c.version_id == _b("vid"), _l.c.kind == _b("kind"), _r.c.entity == _b("entity"))
    .order_by(_l.c.created_at, _r.c.id))
VERSIONS_OF_RUN: Select[Any] = (
    sa.select(*q.VERSION_COLUMNS).select_from(
        q._NAMED.join(_l, _l.c.version_id == versions.c.id))
    .where(_l.c.run_id == _b("run"), _l.c.kind == _b("kind"), versions.c.state == COMMITTED)
    .order_by(_l.c.created_at, versions.c.id))

_MAX_TEXT = 256


def _run(row: Any) -> RunInfo:
    config = load_stored_json(row[8])
    return RunInfo(id=row[0], entity=row[1], project=row[2], name=row[3], job_type=row[4],
                   state=row[5], created_at=row[6], finished_at=row[7],
                   config=config if isinstance(config, dict) else {})


class RunRecords:
    """The runs of one store (``Store.runs``); safe to share between threads."""

    def __init__(self, db: MetadataDB) -> None:
        self.db = db
        # ON CONFLICT DO NOTHING: a creation and its retry racing on PostgreSQL (READ
        # COMMITTED, no row to lock yet) meet on the key instead of failing with its
        # violation; the row is then read and compared (``create``)
        dialect = importlib.import_module(f"sqlalchemy.dialects.{db.engine.dialect.name}")
        self._add_run: Insert = dialect.insert(runs).on_conflict_do_nothing()

    def create(self, entity: str, project: str, *, name: str | None = None,
               job_type: str | None = None, config: dict[str, Any] | None = None,
               run_id: str | None = None) -> RunInfo:
        """A new run, ``running``. ``run_id`` None: a fresh one. One given that exists is
        Conflict (a run is never resumed by another: its links would mix), unless it is
        this very creation again: the same fields, the run still running."""
        validate_name(entity, "entity")
        validate_name(project, "project")
        if name is not None:
            check_text(name, "run name", max_length=_MAX_TEXT)
        if job_type is not None:
            validate_name(job_type, "job_type")
        config = check_config({} if config is None else config)
        run_id = new_run_id() if run_id is None else validate_run_id(run_id)
        fields = {"entity": entity, "project": project, "name": name or run_id,
                  "job_type": job_type, "config": json.dumps(config, sort_keys=True)}
        now = time.time()
        with self.db._write() as conn:
            self.db._fetch(conn, self._add_run, {"id": run_id, **fields, "state": RUNNING,
                                                 "created_at": now, "finished_at": None})
            found = _run(self.db._fetch(conn, RUN, {"run": run_id})[0])
        # made now, or the same creation sent again (an HTTP client whose answer was lost
        # retries it, with the id it chose): answered with the run it made
        if found.state == RUNNING and {
                "entity": found.entity, "project": found.project, "name": found.name,
                "job_type": found.job_type,
                "config": json.dumps(found.config, sort_keys=True)} == fields:
            return found
        raise Conflict(f"run {run_id} exists already; leave the id out for a new one")

    def get(self, entity: str, run_id: str) -> RunInfo:
        validate_run_id(run_id)
        with self.db._read() as conn:
            return self._get(conn, entity, run_id)

    def _get(self, conn: Connection, entity: str, run_id: str) -> RunInfo:
        rows = self.db._fetch(conn, RUN, {"run": run_id})
        if not rows or rows[0][1] != entity:
            raise NotFound(f"run {run_id} not found in entity {entity}")
        return _run(rows[0])

    def finish(self, entity: str, run_id: str, state: str) -> RunInfo:
        """End a running run as ``finished`` or ``failed``. A run that has ended already
        keeps its state and end (W&B's ``finish()`` a second time does nothing)."""
        state = validate_run_state(state)
        if state == RUNNING:
            raise Conflict("a run cannot be set running again; start a new run")
        with self.db._write() as conn:
            self._get(conn, entity, run_id)
            self.db._fetch(conn, FINISH, {"run": run_id, "state": state, "now": time.time()})
        return self.get(entity, run_id)

    def link(self, entity: str, run_id: str, version_id: str, kind: str) -> bool:
        """Record that the run logged or used a committed version of its entity; True if
        the link is new. Recording it again changes nothing. Logging needs a running run;
        a use is recorded whatever the run's state (a mount may still be read after its run
        ended)."""
        kind = validate_link(kind)
        with self.db._write() as conn:
            run = self._get(conn, entity, run_id)
            self.db._lock_committed(conn, version_id)  # NotFound when not committed
            version = self.db._version_by_id(conn, version_id)
            if version.entity != entity:
                raise NotFound(f"artifact version with id {version_id!r} not found")
            args = {"run": run_id, "kind": kind, "vid": version_id}
            if self.db._value(conn, HAS_LINK, args) is not None:
                return False
            if kind == LOGGED and run.state != RUNNING:
                raise Conflict(f"run {run_id} is {run.state}; only a running run logs "
                               "artifacts")
            self.db._fetch(conn, ADD_LINK, {"run_id": run_id, "kind": kind,
                                            "version_id": version_id,
                                            "created_at": time.time()})
        return True

    def versions_of(self, entity: str, run_id: str, kind: str) -> list[VersionInfo]:
        """The committed versions the run logged or used, in the order it did."""
        kind = validate_link(kind)
        with self.db._read() as conn:
            self._get(conn, entity, run_id)
            rows = self.db._fetch(conn, VERSIONS_OF_RUN, {"run": run_id, "kind": kind})
            return self.db._version_infos(conn, rows)

    def runs_of(self, entity: str, version_id: str, kind: str) -> list[RunInfo]:
        """The runs that logged or used a version of the entity, in the order they did
        (the first to log it is its producer)."""
        kind = validate_link(kind)
        with self.db._read() as conn:
            version = self.db._version_by_id(conn, version_id)
            if version.entity != entity:
                raise NotFound(f"artifact version with id {version_id!r} not found")
            rows = self.db._fetch(conn, RUNS_OF_VERSION,
                                  {"vid": version_id, "kind": kind, "entity": entity})
        return [_run(r) for r in rows]
