"""The database goes away under a running server, and comes back (issue 17).

A real ``artifactfs serve --db postgresql://... --blobs file://...`` on a PostgreSQL cluster of
this module's own (not the session's ``pg_cluster``, which other tests use), stopped by its
postmaster's pid and started again on the same folder and port (``PgCluster.stop_server`` and
``start_server``): requests answer 503 with ``Retry-After``, the health route says which part
is down, the server logs one line per failure and no traceback or password, and it answers
again once PostgreSQL does, without a restart. Then the embedded store: a SQLite file whose
write lock another process holds past the busy timeout is one clear error, not a traceback.

One server and one cluster for the module (starting them costs seconds); a test that stopped
PostgreSQL leaves it to the ``reg`` fixture to start it again for the next.
"""

from __future__ import annotations

import email.utils
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest
from helpers import ARTIFACTFS, free_port, wait_until
from pg import PgCluster
from relay import TcpRelay
from seaweed import SeaweedS3
from server.conftest import ENTITY, Registry, clean_env, running_registry

from artifactfs.config import Config
from artifactfs.core.digests import md5_b64
from artifactfs.core.errors import DatabaseUnavailable, RegistryUnavailable
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.registry.http import HttpRegistry
from artifactfs.sdk import Api
from artifactfs.server.app import RETRY_AFTER
from artifactfs.server.health import CHECK_TIMEOUT, FRESH_FOR
from artifactfs.store import Store
from artifactfs.store.database import database_unavailable, parse_db_url
from artifactfs.store.metadata import MetadataDB

PASSWORD = "s3cret-pw"  # in the server's database URL; the cluster trusts loopback


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    """A private cluster: these tests stop it."""
    pg = PgCluster()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="module")
def db_name(cluster: PgCluster) -> str:
    return cluster.new_database()


@pytest.fixture(scope="module")
def served(cluster: PgCluster, db_name: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("db-down"),
                          db_url=cluster.url(db_name, password=PASSWORD)) as reg:
        yield reg


@pytest.fixture
def reg(served: Registry, cluster: PgCluster) -> Registry:
    """The module's server, PostgreSQL running, and the server answering from it again."""
    if not cluster.running:
        cluster.start_server()
    # a query each time (the health route's answer may be a second old): after a restart
    # the first meets a connection the restart closed, and the pool is fresh after it
    projects = f"/entities/{ENTITY}/projects"
    assert wait_until(lambda: served.rw.get(projects).status_code == 200, timeout=20), \
        served.server.log_text()[-3000:]
    return served


def _requests(reg: Registry, method: str, path: str, status: int) -> int:
    """How many requests the server's access log shows for ``method path`` answered
    ``status``."""
    line = re.compile(rf'"{method} /api/v1{re.escape(path)}" {status} ')
    return sum(1 for text in reg.server.log_text().splitlines() if line.search(text))


def _check_log(reg: Registry) -> None:
    """No traceback and no password; the server was never restarted."""
    log = reg.server.log_text()
    assert "Traceback" not in log, log[-3000:]
    assert PASSWORD not in log
    assert log.count("serving postgresql://") == 1
    assert reg.server.proc.poll() is None


def _new_key(cluster: PgCluster, db_name: str) -> str:
    """A key the server has never seen, so it must ask the database about it."""
    db = MetadataDB(parse_db_url(cluster.url(db_name)))
    try:
        return db.create_key(ENTITY)
    finally:
        db.close()


def _client_env(reg: Registry, tmp_path: Path) -> dict[str, str]:
    return {**clean_env(), "ARTIFACTFS_REGISTRY": reg.url, "ARTIFACTFS_API_KEY": reg.rw_key,
            "ARTIFACTFS_ENTITY": ENTITY, "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache"),
            "HOME": str(tmp_path / "home")}


def test_a_stopped_database_answers_503_with_retry_after_and_one_log_line(
        reg: Registry, cluster: PgCluster, db_name: str) -> None:
    project = reg.unique("down")
    made = reg.commit(project, "n", {"a.txt": b"alpha"})
    listing = f"/entities/{ENTITY}/projects/{project}/collections"
    assert reg.rw.get(listing).status_code == 200  # the key is known to the server now
    unseen = reg.client(_new_key(cluster, db_name))

    cluster.stop_server()

    # a key the server knows, then one it must look up: both 503, never 500 or 401
    for client in (reg.rw, unseen):
        r = client.get(listing)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == str(RETRY_AFTER)
        error = r.json()["error"]
        assert error["type"] == "RegistryUnavailable"
        assert "database" in error["message"] and "try again" in error["message"]
        # where the database is is nothing a client (perhaps without a key) is told
        assert str(cluster.port) not in error["message"]
        assert "postgresql" not in error["message"]

    # no key; an answer of the last second (the fixture's poll) may stand for one more
    health = wait_until(lambda: (h := reg.anon.get("/health")).status_code == 503 and h,
                        timeout=FRESH_FOR + CHECK_TIMEOUT + 1)
    assert health, "the health route still says ok"
    assert health.headers["retry-after"] == str(RETRY_AFTER)
    assert health.json() == {"status": "unavailable", "database": "unavailable", "blobs": "ok"}

    # a commit without a key is not sent again: it might have been made
    client = HttpRegistry(reg.url, reg.rw_key)
    try:
        with pytest.raises(RegistryUnavailable):
            client.commit(entity=ENTITY, project=project, name="n", type_="dataset",
                          manifest=Manifest([ManifestEntry("b.txt", md5_b64(b"alpha"), 5)]))
    finally:
        client.close()
    versions = f"/entities/{ENTITY}/projects/{project}/collections/n/versions"
    assert _requests(reg, "POST", versions, 503) == 1

    # one warning line per failure, naming the database without its password
    warnings = [line for line in reg.server.log_text().splitlines()
                if " WARNING " in line and f"GET /api/v1{listing}: " in line]
    assert len(warnings) == 2, "\n".join(warnings)
    assert f"postgresql://afs:***@127.0.0.1:{cluster.port}/{db_name}" in warnings[0]
    _check_log(reg)

    cluster.start_server()
    # back without a restart: the pool's connections the stop closed are not used again
    assert wait_until(lambda: reg.rw.get(listing).status_code == 200, timeout=10)
    assert reg.rw.get(f"/versions/{made['id']}").json()["index"] == 0
    assert wait_until(lambda: reg.anon.get("/health").status_code == 200, timeout=5)
    _check_log(reg)


def test_an_sdk_call_made_while_the_database_is_down_succeeds_once_it_is_back(
        reg: Registry, cluster: PgCluster, tmp_path: Path) -> None:
    project = reg.unique("sdk")
    reg.commit(project, "n", {"a.txt": b"alpha"})
    cluster.stop_server()
    restart = threading.Thread(target=lambda: (time.sleep(1.5), cluster.start_server()))
    api = Api(config=Config.from_env(_client_env(reg, tmp_path)))
    started = time.monotonic()
    restart.start()
    try:
        art = api.artifact(f"{project}/n:latest")
        took = time.monotonic() - started
    finally:
        restart.join(60)
        api.close()
    assert art.version == "v0"
    assert took >= RETRY_AFTER  # it waited as long as the 503 asked before asking again
    resolve = f"/entities/{ENTITY}/projects/{project}/collections/n/resolve/latest"
    assert _requests(reg, "GET", resolve, 503) >= 1
    assert _requests(reg, "GET", resolve, 200) == 1
    _check_log(reg)


def test_the_cli_with_the_database_down_past_its_retries_prints_one_error_line(
        reg: Registry, cluster: PgCluster, tmp_path: Path) -> None:
    project = reg.unique("cli")
    reg.commit(project, "n", {"a.txt": b"alpha"})
    cluster.stop_server()
    started = time.monotonic()
    proc = subprocess.run([ARTIFACTFS, "ls", project], env=_client_env(reg, tmp_path),
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    *notices, last = proc.stderr.strip().splitlines()
    assert last.startswith("error: ") and "database" in last and "try again" in last, last
    assert all("retrying" in line for line in notices), notices
    # four attempts, each after the Retry-After the one before was answered with
    path = f"/entities/{ENTITY}/projects/{project}/collections"
    assert _requests(reg, "GET", path, 503) == 4
    assert took >= 3 * RETRY_AFTER
    _check_log(reg)


def test_a_keyed_commit_in_flight_when_the_database_stops_makes_one_whole_version(
        reg: Registry, cluster: PgCluster, db_name: str) -> None:
    """The commit is held inside its transaction (its version row written, not committed)
    by a lock this test takes on the row of ``latest``; PostgreSQL is stopped under it.
    Nothing of that attempt remains, and the client's retry with the same commit key makes
    the version, once."""
    project = reg.unique("flight")
    reg.commit(project, "n", {"a.txt": b"alpha"})
    data = b"beta" * 1000
    digest = reg.upload(data)
    manifest = Manifest([ManifestEntry(f"d{i}/b.txt", digest, len(data)) for i in range(50)])
    holder = psycopg.connect(cluster.dsn(db_name))  # in a transaction until the stop ends it
    holder.execute("SELECT 1 FROM aliases WHERE alias = 'latest' FOR UPDATE")
    made: list[object] = []

    def commit() -> None:
        client = HttpRegistry(reg.url, reg.rw_key)
        try:
            made.append(client.commit(entity=ENTITY, project=project, name="n",
                                      type_="dataset", manifest=manifest,
                                      commit_key="flight-key-0123456789"))
        except Exception as exc:
            made.append(exc)
        finally:
            client.close()

    def waiting_on_the_lock() -> bool:
        with psycopg.connect(cluster.dsn(db_name), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                               "current_database() AND wait_event_type = 'Lock'").fetchone()
        return bool(row and row[0])

    thread = threading.Thread(target=commit)
    thread.start()
    try:
        assert wait_until(waiting_on_the_lock, timeout=20)
        cluster.stop_server()  # ends the commit's session and the holder's
        cluster.start_server()
    finally:
        thread.join(60)
        holder.close()
    (info,) = made
    assert not isinstance(info, Exception), info
    versions = reg.rw.get(f"/entities/{ENTITY}/projects/{project}/collections/n/versions")
    assert [v["index"] for v in versions.json()] == [0, 1]
    assert versions.json()[1]["file_count"] == 50
    path = f"/entities/{ENTITY}/projects/{project}/collections/n/versions"
    assert _requests(reg, "POST", path, 503) == 1  # the attempt the stop cut short
    assert _requests(reg, "POST", path, 201) == 2  # v0, and the retry
    with psycopg.connect(cluster.dsn(db_name), autocommit=True) as conn:
        (orphans,) = conn.execute("SELECT count(*) FROM version_folders WHERE version_id "
                                  "NOT IN (SELECT id FROM versions)").fetchone() or (None,)
    assert orphans == 0
    _check_log(reg)


def test_after_a_restart_one_call_meets_a_closed_connection_not_one_per_pooled_one(
        reg: Registry, cluster: PgCluster, db_name: str, tmp_path: Path) -> None:
    """In the store itself: five idle connections in the pool when PostgreSQL restarts. The
    first call meets one the restart closed (nothing can tell before asking); the pool's
    others go with it, so the next call works, and a commit, whose sweep lock has a pool of
    its own that pings at checkout, meets none."""
    store = Store(db=cluster.url(db_name), blobs=(tmp_path / "blobs").as_uri())
    try:
        project = reg.unique("pool")
        data = b"gamma" * 100
        (tmp_path / "g").write_bytes(data)
        store.blobs.put_file(tmp_path / "g", md5_b64(data))
        manifest = Manifest([ManifestEntry("g.txt", md5_b64(data), len(data))])
        store.commit(entity=ENTITY, project=project, name="n", type_="dataset",
                     manifest=manifest)
        held = [store.db.engine.connect() for _ in range(5)]
        for conn in held:
            conn.close()  # back in the pool, idle
        cluster.stop_server()
        cluster.start_server()
        with pytest.raises(DatabaseUnavailable):
            store.db.list_projects(ENTITY)
        assert project in store.db.list_projects(ENTITY)
        # (other content: identical content would return v0 itself)
        again = Manifest([ManifestEntry("h.txt", md5_b64(data), len(data))])
        made = store.commit(entity=ENTITY, project=project, name="n", type_="dataset",
                            manifest=again)
        assert made.index == 1
    finally:
        store.db.close()


def test_the_health_route_says_which_part_is_down_and_nothing_more(reg: Registry) -> None:
    r = httpx.get(reg.url + "/api/v1/health", timeout=10)  # no key at all
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "ok", "blobs": "ok"}
    assert r.headers["cache-control"] == "no-store"
    assert httpx.head(reg.url + "/api/v1/health", timeout=10).status_code == 200
    blobs = reg.store / "blobs"
    blobs.rename(reg.store / "blobs.away")  # the volume of the blobs went away
    try:
        time.sleep(FRESH_FOR + 0.1)  # past the answer the fixture's poll left
        r = reg.anon.get("/health")
        assert r.status_code == 503
        assert r.json() == {"status": "unavailable", "database": "ok", "blobs": "unavailable"}
        assert r.headers["retry-after"] == str(RETRY_AFTER)
    finally:
        (reg.store / "blobs.away").rename(blobs)
    assert wait_until(lambda: reg.anon.get("/health").status_code == 200, timeout=5)
    # the polls that found it well are not in the access log; the one that did not is
    assert _requests(reg, "GET", "/health", 200) == 0
    assert _requests(reg, "GET", "/health", 503) >= 1
    _check_log(reg)


def test_the_health_route_probes_a_bucket(tmp_path: Path, seaweed: SeaweedS3,
                                          s3_url: str) -> None:
    """Blobs in S3 (a real SeaweedFS, through a relay that can stop): one HEAD probes the
    bucket; storage stopped is the blob store unavailable, and nothing of it is told."""
    storage = TcpRelay(seaweed.port)
    try:
        with running_registry(tmp_path, blobs_url=s3_url,
                              env={**seaweed.env, "AWS_ENDPOINT_URL": storage.endpoint}) as reg:
            ok = reg.anon.get("/health")
            assert ok.status_code == 200, ok.text
            assert ok.json() == {"status": "ok", "database": "ok", "blobs": "ok"}
            storage.stop()
            time.sleep(FRESH_FOR + 0.1)
            r = reg.anon.get("/health")
            assert r.status_code == 503
            assert r.json() == {"status": "unavailable", "database": "ok",
                                "blobs": "unavailable"}
            assert seaweed.bucket not in r.text
            log = reg.server.log_text()
            assert "health: the blob store " in log
            assert "Traceback" not in log and seaweed.secret_key not in log
    finally:
        storage.stop()


def _postgres_pids(cluster: PgCluster) -> list[int]:
    """The postmaster's pid and its children's (the backends), from /proc."""
    assert cluster.proc is not None
    top = cluster.proc.pid
    found = [top]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == top:  # the field after the state
                found.append(int(entry))
    return found


def test_the_health_route_answers_in_bounded_time_when_the_database_hangs(
        reg: Registry, cluster: PgCluster) -> None:
    """PostgreSQL stopped with SIGSTOP (every process of it, by pid): connections stay open
    and queries never come back. The health route still answers 503 within its bound, polls
    that come while the hung check runs do not start others, and it is well again once
    PostgreSQL goes on."""
    pids = _postgres_pids(cluster)
    time.sleep(FRESH_FOR + 0.1)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(2):
            started = time.monotonic()
            r = reg.anon.get("/health")
            took = time.monotonic() - started
            assert r.status_code == 503 and r.json()["database"] == "unavailable"
            assert r.json()["blobs"] == "ok"
            assert took < CHECK_TIMEOUT + 1.5, took
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert wait_until(lambda: reg.anon.get("/health").status_code == 200, timeout=10)
    did_not_answer = [line for line in reg.server.log_text().splitlines()
                      if "health: the database did not answer" in line]
    assert len(did_not_answer) >= 2
    _check_log(reg)


def test_a_sqlite_store_locked_past_the_busy_timeout_is_one_clear_error(
        tmp_path: Path) -> None:
    store = tmp_path / "store"
    path = store / "registry.sqlite3"
    env = {**clean_env(), "ARTIFACTFS_DB": f"sqlite:///{path}?timeout=1",
           "ARTIFACTFS_BLOBS": store.as_uri(), "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache"),
           "HOME": str(tmp_path / "home")}
    (tmp_path / "a.txt").write_bytes(b"alpha")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ARTIFACTFS, *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    assert cli("push", "a.txt", "p/n", "--type", "dataset").returncode == 0
    holder = sqlite3.connect(path, isolation_level=None)  # another process's write lock
    holder.execute("BEGIN IMMEDIATE")
    try:
        db = MetadataDB(parse_db_url(f"sqlite:///{path}?timeout=0.2"))
        try:
            db.ping()  # readers are not held up (WAL): the health route's check passes
            with pytest.raises(DatabaseUnavailable) as info:
                db.create_key(ENTITY)
        finally:
            db.close()
        message = str(info.value)
        assert f"the database {path} is locked" in message and "0.2 s" in message
        assert info.value.__cause__ is None and info.value.__suppress_context__

        listed = cli("ls", "p/n")
        assert listed.returncode == 0 and "v0" in listed.stdout, listed.stderr
        pushed = cli("push", "a.txt", "p/n", "--type", "dataset", "--alias", "again")
        assert pushed.returncode == 1
        assert "Traceback" not in pushed.stderr
        (line,) = pushed.stderr.strip().splitlines()
        assert line.startswith(f"error: the database {path} is locked"), line
        assert "longer than the 1 s" in line and "fuser" in line
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert cli("push", "a.txt", "p/n", "--type", "dataset", "--alias", "again").returncode == 0


def test_only_errors_that_say_the_database_cannot_be_used_now_are_unavailability(
        cluster: PgCluster, db_name: str, tmp_path: Path) -> None:
    """Real errors of both drivers: a constraint or a bad statement stays what it is (a
    sqlite3.OperationalError too: "no such table" is one), while a server that is not
    there, or a lock held too long, is DatabaseUnavailable naming the database."""
    url = parse_db_url(cluster.url(db_name, password=PASSWORD))
    with psycopg.connect(cluster.dsn(db_name), autocommit=True) as conn:
        conn.execute("CREATE TEMPORARY TABLE t (k int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(psycopg.IntegrityError) as duplicate:
            conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(psycopg.ProgrammingError) as bad:
            conn.execute("SELECT nothing FROM nowhere")
    assert database_unavailable(duplicate.value, url) is None
    assert database_unavailable(bad.value, url) is None
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"host=127.0.0.1 port={free_port()} user=afs dbname=x",
                        connect_timeout=5)
    down = database_unavailable(refused.value, url)
    assert isinstance(down, DatabaseUnavailable)
    assert str(down).startswith(f"the database postgresql://afs:***@127.0.0.1:{cluster.port}/")
    assert "check that PostgreSQL is running" in str(down) and PASSWORD not in str(down)

    path = tmp_path / "x.sqlite3"
    sqlite_url = parse_db_url(f"sqlite:///{path}?timeout=0.1")
    one = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    try:
        one.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        one.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.IntegrityError) as duplicate_row:
            one.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.OperationalError) as no_table:
            one.execute("SELECT * FROM nowhere")
        one.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as locked:
            other.execute("BEGIN IMMEDIATE")
    finally:
        one.close()
        other.close()
    assert database_unavailable(duplicate_row.value, sqlite_url) is None
    assert database_unavailable(no_table.value, sqlite_url) is None
    found = database_unavailable(locked.value, sqlite_url)
    assert isinstance(found, DatabaseUnavailable)
    assert str(found).startswith(f"the database {path} is locked")


def test_a_retry_after_given_as_a_date_is_waited_for_too() -> None:
    """RFC 9110 lets Retry-After be an HTTP date: the client waits until then (a server of
    the test's own, answering 503 once with a date two seconds ahead, then 200)."""
    seen: list[float] = []

    class Busy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(time.monotonic())
            first = len(seen) == 1
            body = b'{"error": {"type": "RegistryUnavailable", "message": "busy"}}' if first \
                else b'["p"]'
            self.send_response(503 if first else 200)
            if first:
                self.send_header("Retry-After",
                                 email.utils.formatdate(time.time() + 2, usegmt=True))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = HttpRegistry(f"http://127.0.0.1:{server.server_address[1]}", "key")
    try:
        assert client.list_projects(ENTITY) == ["p"]
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 1.0  # a date has whole seconds: at least one of the two


def test_gc_with_the_database_gone_is_one_clear_error(
        reg: Registry, cluster: PgCluster, db_name: str, tmp_path: Path) -> None:
    """gc's mark and sweep run their own statements (not MetadataDB's): the database gone
    under them is DatabaseUnavailable naming it, not the driver's traceback."""
    from artifactfs.store.gc import plan_gc, sweep

    store = Store(db=cluster.url(db_name), blobs=(tmp_path / "blobs").as_uri())
    try:
        plan = plan_gc(store, grace=0)
        cluster.stop_server()
        with pytest.raises(DatabaseUnavailable, match=r"check that PostgreSQL is running"):
            plan_gc(store, grace=0)
        with pytest.raises(DatabaseUnavailable):
            sweep(store, plan)
    finally:
        store.db.close()


def _setting(db: MetadataDB, name: str) -> str:
    with db.engine.connect() as conn:
        return str(conn.exec_driver_sql(
            "SELECT setting FROM pg_settings WHERE name = %(n)s", {"n": name}).scalar())


def test_sessions_ask_the_database_to_find_a_vanished_replica_dead(pg_url: str) -> None:
    """A replica whose machine vanishes mid-commit held its collection's row lock (and its
    share of gc's lock) until TCP gave up, hours later: every session sets PostgreSQL's
    keepalives for itself, and a URL's own options still win."""
    db = MetadataDB(parse_db_url(pg_url))
    try:
        assert (_setting(db, "tcp_keepalives_idle"), _setting(db, "tcp_keepalives_interval"),
                _setting(db, "tcp_keepalives_count")) == ("60", "10", "6")
    finally:
        db.close()
    own = MetadataDB(parse_db_url(
        pg_url + "?options=-c%20tcp_keepalives_idle%3D5%20-c%20statement_timeout%3D7000"))
    try:
        assert _setting(own, "tcp_keepalives_idle") == "5"
        assert _setting(own, "statement_timeout") == "7000"
        assert _setting(own, "tcp_keepalives_count") == "6"
    finally:
        own.close()


def test_a_database_host_that_never_answers_fails_a_connect_in_bounded_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that takes the connection and says nothing (packets dropped past the
    handshake, a hung server): without a connect timeout libpq waits as long as TCP does."""
    import socket

    from artifactfs.store import database

    monkeypatch.setitem(database._PG_LIBPQ_DEFAULTS, "connect_timeout", 1)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
    try:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="connection timeout expired"):
            MetadataDB(parse_db_url(f"postgresql://afs@127.0.0.1:{port}/none"))
        assert time.monotonic() - started < 30  # a hang, not a speed: without it, forever
    finally:
        silent.close()
