"""Two ``artifactfs serve`` replicas on one PostgreSQL database and one S3 bucket (issue 17).

Real parts only: a private PostgreSQL cluster (tests/pg.py), a prefix of its own in a real
SeaweedFS bucket (tests/seaweed.py), two ``serve --db postgresql://... --blobs s3://...``
processes on loopback, started once for the module (each test keeps to a project of its
own), and one API key made in that database. Clients are threads of this process on the
SDK's HTTP client (``HttpRegistry``, what ``Api`` talks through: the commits, uploads and
alias moves), and ``Api`` itself to download and verify what was committed; every blob goes
to storage and comes back from it by presigned URL. A replica is killed with SIGKILL to its
pid, as a crash or the OOM killer would.

- 8 clients push to one collection at once, 4 through each replica, and each sends its
  commit a second time with the same key through the other replica: exactly v0..v7,
  ``latest`` on v7, each version holding its client's bytes.
- 8 clients move and remove aliases, set two at once by committing, and delete versions,
  at once through both replicas: the end is a serial order's (see the test's docstring).
- A replica killed in its commit's transaction, after the version row is written and
  before COMMIT (held there by a row lock this test takes, so that the kill lands there
  every time): nothing of it shows through the other replica; the retry with the same key
  makes one version, with the next number.
- A replica killed between a client's requests: the other serves everything the first one
  committed and took, blob bytes by presigned URL included, and commits what it took.
- A replica whose machine vanishes mid-commit (a relay in front of PostgreSQL falls silent,
  then the replica is killed): PostgreSQL hears no close, and the collection stays locked
  until the ``idle_in_transaction_session_timeout`` docs/deploy.md advises ends the session.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from helpers import RegistryServer, rand_bytes, wait_until
from pg import PgCluster
from relay import TcpRelay
from seaweed import SeaweedS3
from server.conftest import ENTITY, clean_env

from artifactfs.config import Config
from artifactfs.core.chunks import CHUNK_INDEX_EXTRA_KEY, CHUNK_SIZE
from artifactfs.core.digests import blob_key
from artifactfs.core.errors import NotFound, RegistryUnavailable
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.records import COMMITTED, DELETED, VersionInfo
from artifactfs.files import hash_file
from artifactfs.registry.http import HttpRegistry
from artifactfs.sdk import Api
from artifactfs.store.database import parse_db_url
from artifactfs.store.metadata import MetadataDB

CLIENTS = 8
ROUNDS = 4  # alias moves per client and phase
_T = TypeVar("_T")


@dataclass
class Replicas:
    """The module's two replicas, what they share, and a way to start one more."""

    cluster: PgCluster
    database: str
    db_url: str
    blobs_url: str
    key: str
    storage: str  # the S3 endpoint presigned URLs point at
    env: dict[str, str]  # the servers' environment: the bucket's standard AWS configuration
    root: Path
    servers: list[RegistryServer]

    def start(self, name: str) -> RegistryServer:
        """Another replica on the same database and bucket; the caller stops it."""
        folder = self.root / name
        folder.mkdir()
        return RegistryServer(folder, folder / "server.log", env=self.env,
                              db_url=self.db_url, blobs_url=self.blobs_url)

    def client(self, server: RegistryServer, **options: Any) -> HttpRegistry:
        return HttpRegistry(server.url, self.key, **options)

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query on the shared database, from a session of the test's own."""
        with psycopg.connect(self.cluster.dsn(self.database), autocommit=True) as conn:
            return conn.execute(query, params or None).fetchall()


@pytest.fixture(scope="module")
def replicas(pg_cluster: PgCluster, seaweed: SeaweedS3,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    database = pg_cluster.new_database()
    servers: list[RegistryServer] = []
    try:
        url = pg_cluster.url(database)
        db = MetadataDB(parse_db_url(url))
        try:
            key = db.create_key(ENTITY)
        finally:
            db.close()
        reps = Replicas(pg_cluster, database, url,
                        f"s3://{seaweed.bucket}/t-{secrets.token_hex(6)}", key,
                        seaweed.endpoint, {**clean_env(), **seaweed.env},
                        tmp_path_factory.mktemp("replicas"), servers)
        for name in ("a", "b"):
            servers.append(reps.start(name))
        yield reps
    finally:
        for server in servers:
            server.stop()
        pg_cluster.drop_database(database)


@pytest.fixture
def spare(replicas: Replicas) -> Iterator[RegistryServer]:
    """A third replica of the test's own, to kill; stopped at teardown if still alive."""
    server = replicas.start(f"spare-{secrets.token_hex(4)}")
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def clients_of(replicas: Replicas, count: int = CLIENTS, *, first: int = 0
               ) -> Iterator[list[HttpRegistry]]:
    """``count`` clients, client ``i`` on replica ``(first + i) % 2``: half on each."""
    made = [replicas.client(replicas.servers[(first + i) % 2]) for i in range(count)]
    try:
        yield made
    finally:
        for client in made:
            client.close()


def at_once(jobs: list[Callable[[], _T]]) -> list[_T]:
    """Run every job in a thread of its own, all released together; their results."""
    barrier = threading.Barrier(len(jobs), timeout=60)

    def run(job: Callable[[], _T]) -> _T:
        barrier.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        return [f.result(timeout=120) for f in futures]


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def upload(client: HttpRegistry, folder: Path, files: dict[str, bytes]) -> Manifest:
    """Write ``files`` under ``folder``, upload each (straight to storage) and return their
    manifest, entries made as the SDK makes them (a large one records its chunk index)."""
    entries = []
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        content = hash_file(path)
        extra = ({CHUNK_INDEX_EXTRA_KEY: content.chunk_index.sha256()}
                 if content.chunk_index is not None else {})
        entries.append(ManifestEntry(name, content.digest, content.size, extra=extra))
        client.upload_blob(path, content.digest)
    return Manifest(entries)


def sdk(replicas: Replicas, server: RegistryServer, folder: Path) -> Api:
    """The SDK of a user whose ``ARTIFACTFS_REGISTRY`` is ``server``."""
    return Api(config=Config.from_env({
        "ARTIFACTFS_REGISTRY": server.url, "ARTIFACTFS_API_KEY": replicas.key,
        "ARTIFACTFS_ENTITY": ENTITY, "ARTIFACTFS_CACHE_DIR": str(folder / "cache"),
        "HOME": str(folder / "home")}))


def downloaded(api: Api, name: str, folder: Path) -> dict[str, bytes]:
    """Every file of artifact ``name``, downloaded (each verified) and read back."""
    art = api.artifact(name)
    root = Path(art.download(root=str(folder)))
    art.verify(str(root))
    return {e.path: (root / e.path).read_bytes() for e in art.manifest}


def holders(client: HttpRegistry, project: str, name: str) -> dict[str, list[int]]:
    """Alias -> the indexes of the committed versions that hold it, as a replica lists them."""
    out: dict[str, list[int]] = {}
    for v in client.list_versions(ENTITY, project, name):
        for alias in v.aliases:
            out.setdefault(alias, []).append(v.index)
    return out


def alias_rows(replicas: Replicas, project: str, name: str) -> list[tuple[str, int, str]]:
    """Every row of the aliases table of a collection, with its version's number and state,
    read from the database itself: a row naming a deleted version would not be listed by a
    replica (it lists committed versions), and must not exist either."""
    return [(str(a), int(i), str(s)) for a, i, s in replicas.sql(
        "SELECT a.alias, v.idx, v.state FROM aliases a JOIN versions v ON v.id = a.version_id"
        " JOIN collections c ON c.id = a.collection_id JOIN projects p ON p.id = c.project_id"
        " WHERE p.name = %s AND c.name = %s ORDER BY a.alias", (project, name))]


_REQUEST_LINE = re.compile(r'"([A-Z]+) (\S+)" (\d{3}) ')


def requests_served(server: RegistryServer, since: int = 0) -> list[tuple[str, str, int]]:
    """``(method, path, status)`` of every request in the server's log past character
    ``since`` (a mark taken when a test began: the module's replicas serve every test)."""
    return [(m, p, int(s)) for m, p, s in _REQUEST_LINE.findall(server.log_text()[since:])]


def log_marks(*servers: RegistryServer) -> dict[str, int]:
    return {server.url: len(server.log_text()) for server in servers}


def assert_no_faults(marks: dict[str, int], *servers: RegistryServer) -> None:
    """No request since ``marks`` answered 5xx: a race that failed a request and was hidden
    by the client's retry (a keyed commit is retried on a 500) still fails the test."""
    faults = [r for server in servers for r in requests_served(server, marks.get(server.url, 0))
              if r[2] >= 500]
    assert faults == []


def assert_no_secrets(replicas: Replicas, seaweed: SeaweedS3, *servers: RegistryServer
                      ) -> None:
    for server in servers:
        log = server.log_text()
        assert replicas.key not in log
        assert seaweed.secret_key not in log
        assert "X-Amz-Signature=" not in log


# ---- 8 clients pushing to one collection ---------------------------------------------------


def test_eight_clients_push_to_one_collection_through_two_replicas(
        replicas: Replicas, seaweed: SeaweedS3, tmp_path: Path) -> None:
    """Exactly v0..v7, no gap, no duplicate, ``latest`` on v7, as both replicas list them;
    every version holds the bytes its client uploaded (downloaded through the other
    replica and compared); the 8 sends of each commit's key through the other replica,
    racing the first sends, made no version of their own."""
    project = unique("push")
    marks = log_marks(*replicas.servers)
    files = [{f"client-{i}.txt": f"client {i}\n".encode(),
              # past one chunk: a presigned PUT the server reads back for its chunk index
              "weights.bin": rand_bytes(CHUNK_SIZE + (CHUNK_SIZE // 2) + i, seed=1700 + i)}
             for i in range(CLIENTS)]
    keys = [f"push-{i:02d}-{secrets.token_hex(8)}" for i in range(CLIENTS)]
    with clients_of(replicas) as firsts, clients_of(replicas, first=1) as agains:
        manifests = at_once([
            lambda i=i: upload(firsts[i], tmp_path / f"up{i}", files[i])
            for i in range(CLIENTS)])

        def send(client: HttpRegistry, i: int) -> VersionInfo:
            return client.commit(entity=ENTITY, project=project, name="shared",
                                 type_="model", manifest=manifests[i], commit_key=keys[i])

        made = at_once([lambda c=c, i=i: send(c, i)
                        for i in range(CLIENTS) for c in (firsts[i], agains[i])])
        first_sends, second_sends = made[0::2], made[1::2]
        assert sorted(v.index for v in first_sends) == list(range(CLIENTS))
        assert [v.id for v in second_sends] == [v.id for v in first_sends]
        for client in firsts[:2]:  # one on each replica
            listed = client.list_versions(ENTITY, project, "shared")
            assert [v.index for v in listed] == list(range(CLIENTS))
            assert holders(client, project, "shared") == {"latest": [CLIENTS - 1]}
            assert client.resolve(ENTITY, project, "shared", "latest").index == CLIENTS - 1
            assert {v.id: v.digest for v in listed} == {
                v.id: manifests[i].digest() for i, v in enumerate(first_sends)}
    for i, version in enumerate(first_sends):
        other = replicas.servers[(i + 1) % 2]
        api = sdk(replicas, other, tmp_path / f"reader{i}")
        try:
            got = downloaded(api, f"{project}/shared:{version.version}", tmp_path / f"down{i}")
        finally:
            api.close()
        assert got == files[i]
    # each of the 16 sends answered 201 at the first attempt: none failed and was retried
    def commits() -> list[int]:
        # a request's log line is written once its answer is out: wait for the last
        return [status for server in replicas.servers
                for method, path, status in requests_served(server, marks[server.url])
                if method == "POST" and path.endswith("/collections/shared/versions")]

    wait_until(lambda: len(commits()) >= 2 * CLIENTS, timeout=10)
    assert commits() == [201] * 2 * CLIENTS
    assert_no_faults(marks, *replicas.servers)
    # the bytes went to storage and came back from it, not through the replicas
    for server in replicas.servers:
        assert '"PUT /api/v1/blobs/' not in server.log_text()
    digest = manifests[0]["weights.bin"].digest
    r = httpx.get(f"{replicas.servers[1].url}/api/v1/blobs/{blob_key(digest)}",
                  headers={"Authorization": f"Bearer {replicas.key}"})
    assert r.status_code == 307 and r.headers["location"].startswith(replicas.storage)
    assert_no_secrets(replicas, seaweed, *replicas.servers)


# ---- 8 clients moving aliases ----------------------------------------------------------------


def test_eight_clients_moving_aliases_through_two_replicas_end_as_a_serial_order(
        replicas: Replicas, tmp_path: Path) -> None:
    """Alias moves, removals, version deletes and commits setting two aliases, from 8
    clients at once (client i through replica i % 2), end in the state of some serial order
    of them. Each phase checks exactly what every serial order has in common:

    - always: an alias is held by at most one version of the collection (the table's key)
      and never by a deleted version (read from the database itself, where a replica's
      listing would not show it); ``latest`` is on the newest committed version; both
      replicas list the same state.
    - A, moves and removals, on versions v0..v7: clients 0-3 move ``best`` then ``prod``
      to their own version, 4 times; clients 4-5 move ``best`` to theirs and remove it
      again, 4 times; clients 6-7 the same with ``prod``. In a serial order an alias ends
      where its last operation left it: on the version of a client whose last operation
      on it was a move (0-3), or on none (a removal by 4-7 came last). So ``best`` and
      ``prod`` are each on one of v0..v3 or on none, never on v4..v7, and ``latest`` (moved
      by no one) stays on v11.
    - B, deletes racing moves onto the versions deleted: clients 0-3 move ``best`` to
      v8..v11 (one each), 8 times; clients 4-7 each move ``prod`` to one of v8..v11 and
      then delete that version with its aliases, through the other replica than the one
      its mover of ``best`` uses. Every move answers 200 or 404 ("not found": the version
      is gone), never anything else, and never 200 after a 404. ``prod`` ends on no version
      (the last move of it, whoever made it, went onto a version whose delete came after);
      ``best`` likewise once any move of it to v8..v11 succeeded, else where A left it;
      ``latest`` goes back to v7 (four deletes of the four newest at once, each choosing
      the newest left under the collection's lock).
    - C, two aliases moved in one request: the API moves several aliases at once only in
      a commit (``aliases``), with ``latest``. 8 commits at once, each naming ``best`` and
      ``prod``: numbered v12..v19 (v8..v11's numbers are never used again), and
      ``latest``, ``best`` and ``prod`` all three on v19 and on no other version: the last
      commit of any serial order takes all three together.
    """
    project = unique("aliases")
    marks = log_marks(*replicas.servers)
    with clients_of(replicas) as clients:
        seed = upload(clients[0], tmp_path / "seed", {"seed.txt": b"one blob for all\n"})
        entry = next(iter(seed))

        def commit(client: HttpRegistry, tag: str, aliases: tuple[str, ...] = ()
                   ) -> VersionInfo:
            manifest = Manifest([ManifestEntry(f"{tag}.txt", entry.digest, entry.size)])
            return client.commit(entity=ENTITY, project=project, name="m", type_="model",
                                 manifest=manifest, aliases=aliases)

        versions = [commit(clients[i % 2], f"v{i}") for i in range(12)]
        movers, doomed = versions[:CLIENTS], versions[CLIENTS:]

        def state() -> dict[str, list[int]]:
            """The aliases as both replicas list them (the same), checked against the
            database's own rows."""
            seen = [holders(c, project, "m") for c in clients[:2]]
            assert seen[0] == seen[1]
            rows = alias_rows(replicas, project, "m")
            assert all(s == COMMITTED for _, _, s in rows), rows
            assert {a: [i] for a, i, _ in rows} == seen[0]
            return seen[0]

        # ---- A: moves and removals
        def phase_a(i: int) -> Callable[[], None]:
            client, vid = clients[i], movers[i].id

            def run() -> None:
                for _ in range(ROUNDS):
                    if i < 4:
                        client.add_alias(vid, "best")
                        client.add_alias(vid, "prod")
                    else:
                        alias = "best" if i < 6 else "prod"
                        client.add_alias(vid, alias)
                        client.remove_alias(vid, alias)
            return run

        at_once([phase_a(i) for i in range(CLIENTS)])
        after_a = state()
        assert after_a["latest"] == [11]
        for alias in ("best", "prod"):
            assert after_a.get(alias, []) in ([], [0], [1], [2], [3]), after_a

        # ---- B: deletes racing moves onto the versions deleted
        def mover(i: int) -> Callable[[], list[int]]:
            def run() -> list[int]:
                answers = []
                for _ in range(2 * ROUNDS):
                    try:
                        clients[i].add_alias(doomed[i].id, "best")
                        answers.append(200)
                    except NotFound:
                        answers.append(404)
                return answers
            return run

        def deleter(i: int) -> Callable[[], list[int]]:
            # the version mover (i - 3) % 4 moves onto, deleted through the other replica
            victim = doomed[(i - 3) % 4].id

            def run() -> list[int]:
                clients[i].add_alias(victim, "prod")
                clients[i].delete_version(victim, delete_aliases=True)
                return []
            return run

        answers = at_once([mover(i) for i in range(4)] + [deleter(i) for i in range(4, 8)])
        moves = answers[:4]
        for got in moves:
            assert got == sorted(got) and set(got) <= {200, 404}, moves
        after_b = state()
        assert after_b["latest"] == [7]
        assert "prod" not in after_b
        if any(200 in got for got in moves):
            assert "best" not in after_b
        else:
            assert after_b.get("best", []) == after_a.get("best", [])
        gone = replicas.sql("SELECT state FROM versions WHERE id = ANY(%s)",
                            ([v.id for v in doomed],))
        assert [s for (s,) in gone] == [DELETED] * 4

        # ---- C: two aliases moved together, by committing
        made = at_once([lambda i=i: commit(clients[i], f"b{i}", ("best", "prod"))
                        for i in range(CLIENTS)])
        assert sorted(v.index for v in made) == list(range(12, 20))
        assert state() == {"latest": [19], "best": [19], "prod": [19]}
        listed = clients[1].list_versions(ENTITY, project, "m")
        assert [v.index for v in listed] == [*range(8), *range(12, 20)]
    assert_no_faults(marks, *replicas.servers)


# ---- a replica killed ------------------------------------------------------------------------


def collection_id(replicas: Replicas, project: str, name: str) -> int:
    rows = replicas.sql("SELECT c.id FROM collections c JOIN projects p ON p.id = c.project_id"
                        " WHERE p.name = %s AND c.name = %s", (project, name))
    return int(rows[0][0])


@contextlib.contextmanager
def latest_row_locked(replicas: Replicas, cid: int) -> Iterator[Callable[[], int]]:
    """The ``latest`` alias row of collection ``cid`` locked by a session of the test's own
    until the block ends: a commit to the collection then stops inside its transaction,
    after it has written the version row and its folder rows, where it moves ``latest``.
    Yields a function that waits for such a commit and returns its backend's pid."""
    holder = psycopg.connect(replicas.cluster.dsn(replicas.database))
    try:
        holder.execute("SELECT 1 FROM aliases WHERE collection_id = %s AND alias = 'latest'"
                       " FOR UPDATE", (cid,))

        def stopped() -> int:
            waiting = wait_until(lambda: replicas.sql(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO aliases%%'",
                (replicas.database,)), timeout=30)
            assert waiting, "the commit never reached its move of 'latest'"
            pid = int(waiting[0][0])
            written = {r[0] for r in replicas.sql(
                "SELECT relation::regclass::text FROM pg_locks WHERE pid = %s"
                " AND locktype = 'relation' AND mode = 'RowExclusiveLock'", (pid,))}
            assert {"versions", "version_folders"} <= written, written
            return pid

        yield stopped
    finally:
        holder.rollback()
        holder.close()


def test_a_replica_killed_mid_commit_leaves_no_partial_version(
        replicas: Replicas, spare: RegistryServer, tmp_path: Path) -> None:
    """The spare replica's commit is held inside its transaction, after it wrote the
    version row and the version's folder rows (its backend holds row-exclusive locks on
    both tables) and while it waits to move ``latest``, whose row this test has locked; the
    replica is then killed by its pid. Meanwhile and afterwards the other replicas show
    v0 alone, no commit key, no alias of the dead commit; the dead replica's session gives
    up the shared gc lock with it; and the same commit sent again with its key, through both
    other replicas at once, makes exactly one version, v1."""
    project = unique("killed")
    a, b = replicas.servers
    marks = log_marks(a, b)
    files = {"labels/a.txt": b"cat\n", "images/b.bin": rand_bytes(CHUNK_SIZE + 99, seed=17)}
    key = f"killed-{secrets.token_hex(8)}"
    with clients_of(replicas, 2) as (one, two):
        v0 = one.commit(entity=ENTITY, project=project, name="data", type_="dataset",
                        manifest=upload(one, tmp_path / "v0", {"first.txt": b"v0\n"}))
        dying = replicas.client(spare, attempts=1)
        manifest = upload(dying, tmp_path / "v1", files)
        cid = collection_id(replicas, project, "data")
        folders_of_v0 = replicas.sql(
            "SELECT count(*) FROM version_folders WHERE version_id = %s", (v0.id,))[0][0]
        pool = ThreadPoolExecutor(1)
        try:
            with latest_row_locked(replicas, cid) as stopped:
                sent = pool.submit(dying.commit, entity=ENTITY, project=project, name="data",
                                   type_="dataset", manifest=manifest, aliases=["candidate"],
                                   commit_key=key)
                pid = stopped()
                assert replicas.sql(
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE d.datname = %s AND l.locktype = 'advisory' AND l.mode = 'ShareLock'"
                    " AND l.granted", (replicas.database,))[0][0] == 1  # the commit's gc lock
                # in the middle of the commit, the other replicas see nothing of it
                assert [v.id for v in two.list_versions(ENTITY, project, "data")] == [v0.id]

                os.kill(spare.proc.pid, signal.SIGKILL)
                assert spare.proc.wait(timeout=30) == -signal.SIGKILL
                with pytest.raises(RegistryUnavailable):
                    sent.result(timeout=60)
            # the lock is given up: the orphaned backend runs on and finds its client gone
        finally:
            pool.shutdown(wait=False)
            dying.close()
        assert wait_until(lambda: not replicas.sql(
            "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)), timeout=30)
        assert wait_until(lambda: not replicas.sql(
            "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE d.datname = %s AND l.locktype = 'advisory'", (replicas.database,)),
            timeout=30)

        for client in (one, two):  # a and b
            assert [v.id for v in client.list_versions(ENTITY, project, "data")] == [v0.id]
            assert client.resolve(ENTITY, project, "data", "latest").id == v0.id
            for label in ("v1", "candidate"):
                with pytest.raises(NotFound):
                    client.resolve(ENTITY, project, "data", label)
            assert client.version_by_commit_key(ENTITY, key) is None
        assert replicas.sql("SELECT count(*) FROM versions WHERE collection_id = %s",
                            (cid,))[0][0] == 1
        assert replicas.sql(
            "SELECT count(*) FROM version_folders f JOIN versions v ON v.id = f.version_id"
            " WHERE v.collection_id = %s", (cid,))[0][0] == folders_of_v0
        assert replicas.sql("SELECT count(*) FROM commit_keys WHERE commit_key = %s",
                            (key,))[0][0] == 0

        # the client's retry, with the same key, through both survivors at once
        again = at_once([lambda c=c: c.commit(
            entity=ENTITY, project=project, name="data", type_="dataset", manifest=manifest,
            aliases=["candidate"], commit_key=key) for c in (one, two)])
        assert again[0].id == again[1].id and again[0].index == 1
        assert holders(two, project, "data") == {"latest": [1], "candidate": [1]}
        assert one.version_by_commit_key(ENTITY, key).id == again[0].id  # type: ignore[union-attr]
    api = sdk(replicas, b, tmp_path / "reader")
    try:
        assert downloaded(api, f"{project}/data:candidate", tmp_path / "down") == files
    finally:
        api.close()
    assert f"committed {ENTITY}/{project}/data:v1" in a.log_text() + b.log_text()
    assert_no_faults(marks, a, b, spare)


def test_a_client_carries_on_through_the_other_replica_when_its_own_dies(
        replicas: Replicas, spare: RegistryServer, seaweed: SeaweedS3, tmp_path: Path) -> None:
    """A client commits v0 and uploads the blob of its next version through the spare
    replica, which is then killed between two requests: the client's next request fails as
    an unreachable registry (what a load balancer sends elsewhere), and the other replica
    serves everything the dead one committed and took: the version found by its commit key
    and alias, its manifest and folders, blob bytes by presigned URL (ranges and the chunk
    index), the uploaded blob as present, and v1 committed on it; the SDK downloads and
    verifies both versions through it."""
    project = unique("failover")
    marks = log_marks(*replicas.servers)
    big = rand_bytes(2 * CHUNK_SIZE + 5, seed=23)
    files = {"README.md": b"shards of a dataset\n", "shards/0.bin": big}
    later = {"shards/1.bin": rand_bytes(CHUNK_SIZE // 3, seed=24)}
    key = f"failover-{secrets.token_hex(8)}"
    first = replicas.client(spare, attempts=2)
    try:
        v0 = first.commit(entity=ENTITY, project=project, name="data", type_="dataset",
                          manifest=upload(first, tmp_path / "v0", files), aliases=["prod"],
                          commit_key=key)
        manifest = upload(first, tmp_path / "v1", later)
        os.kill(spare.proc.pid, signal.SIGKILL)
        assert spare.proc.wait(timeout=30) == -signal.SIGKILL
        with pytest.raises(RegistryUnavailable):
            first.resolve(ENTITY, project, "data", "prod")
    finally:
        first.close()
    survivor = replicas.servers[1]
    with contextlib.closing(replicas.client(survivor)) as second:
        assert second.version_by_commit_key(ENTITY, key).id == v0.id  # type: ignore[union-attr]
        assert second.resolve(ENTITY, project, "data", "prod").id == v0.id
        stored = second.manifest(v0.id)
        assert sorted(e.path for e in stored) == sorted(files)
        assert [listing.names for listing in second.folder_listings(v0.id, ["", "shards"])] == [
            ["README.md", "shards"], ["0.bin"]]
        digest = stored["shards/0.bin"].digest
        r = httpx.get(f"{survivor.url}/api/v1/blobs/{blob_key(digest)}",
                      headers={"Authorization": f"Bearer {replicas.key}"})
        assert r.status_code == 307 and r.headers["location"].startswith(replicas.storage)
        assert second.read_blob(digest, CHUNK_SIZE - 7, CHUNK_SIZE + 9) == big[
            CHUNK_SIZE - 7:CHUNK_SIZE + 9]
        assert second.chunk_index(digest) == hash_file(tmp_path / "v0" / "shards/0.bin"
                                                        ).chunk_index
        # the blob uploaded through the dead replica counts here: nothing to send again
        assert second.missing_blobs([e.digest for e in manifest]) == set()
        whole = Manifest([*stored, *manifest])
        v1 = second.commit(entity=ENTITY, project=project, name="data", type_="dataset",
                           manifest=whole)
        assert (v1.index, set(v1.aliases)) == (1, {"latest"})
    api = sdk(replicas, survivor, tmp_path / "reader")
    try:
        assert downloaded(api, f"{project}/data:prod", tmp_path / "down0") == files
        assert downloaded(api, f"{project}/data:latest", tmp_path / "down1") == {
            **files, **later}
    finally:
        api.close()
    assert_no_secrets(replicas, seaweed, spare, survivor)
    assert_no_faults(marks, spare, survivor)


# ---- a replica whose machine vanishes ---------------------------------------------------------

IDLE_TIMEOUT_MS = 2000  # the bound given to the vanished replica's transactions


def test_a_vanished_replicas_transaction_holds_its_collection_until_the_idle_bound(
        replicas: Replicas, tmp_path: Path) -> None:
    """What docs/deploy.md warns of, and the bound it advises. A replica reaches PostgreSQL
    through a relay; its commit is held inside its transaction (as above), the relay falls
    silent and the replica is killed: its machine is gone, but PostgreSQL hears no close, so
    the transaction stays open, idle, with the collection's row lock. A commit to that
    collection through another replica waits for it, and goes through (as v1, the killed
    commit leaving nothing) once PostgreSQL ends the session at the replica's
    ``idle_in_transaction_session_timeout``, given in its ``--db`` URL. Without a bound the
    wait is TCP's (the relay's socket, still open, answers the keepalives every session
    sets; a machine really gone would stop answering them in about two minutes)."""
    project = unique("vanished")
    relay = TcpRelay(replicas.cluster.port)
    options = f"-c idle_in_transaction_session_timeout={IDLE_TIMEOUT_MS}".replace(" ", "%20")
    folder = tmp_path / "vanishing"
    folder.mkdir()
    pool = ThreadPoolExecutor(1)
    try:
        doomed = RegistryServer(
            folder, folder / "server.log", env=replicas.env, blobs_url=replicas.blobs_url,
            db_url=f"postgresql://afs@127.0.0.1:{relay.port}/{replicas.database}"
                   f"?options={options.replace('=', '%3D')}")
        try:
            with clients_of(replicas, 1) as (one,), \
                    contextlib.closing(replicas.client(doomed, attempts=1)) as lost:
                v0 = one.commit(entity=ENTITY, project=project, name="data", type_="dataset",
                                manifest=upload(one, tmp_path / "v0", {"a.txt": b"v0\n"}))
                manifest = upload(lost, tmp_path / "v1", {"b.txt": b"never committed\n"})
                with latest_row_locked(replicas, collection_id(replicas, project, "data")
                                       ) as stopped:
                    sent = pool.submit(lost.commit, entity=ENTITY, project=project,
                                       name="data", type_="dataset", manifest=manifest)
                    pid = stopped()
                    relay.silence()
                    os.kill(doomed.proc.pid, signal.SIGKILL)
                    assert doomed.proc.wait(timeout=30) == -signal.SIGKILL
                    with pytest.raises(RegistryUnavailable):
                        sent.result(timeout=60)
                # the backend finishes its statement, answers into the silence, and waits
                assert wait_until(lambda: replicas.sql(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s"
                    " AND state = 'idle in transaction'", (pid,)), timeout=10)
                started = time.monotonic()
                v1 = one.commit(entity=ENTITY, project=project, name="data", type_="dataset",
                                manifest=Manifest([*manifest, *one.manifest(v0.id)]))
                waited = time.monotonic() - started
                assert v1.index == 1
                assert IDLE_TIMEOUT_MS / 2000 < waited < IDLE_TIMEOUT_MS / 1000 + 10, waited
                assert not replicas.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
                assert [v.index for v in one.list_versions(ENTITY, project, "data")] == [0, 1]
        finally:
            doomed.stop()
    finally:
        pool.shutdown(wait=False)
        relay.stop()
