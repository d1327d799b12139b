"""``artifactfs gc``: mark and sweep on a folder with SQLite and on S3 with PostgreSQL, beside
commits and a server running at the same time (all real processes, storage and databases)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from helpers import ARTIFACTFS, RegistryServer, rand_bytes, stop_process

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.errors import InvalidRequest
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.core.records import COMMITTED
from artifactfs.store import Store
from artifactfs.store.gc import parse_grace
from artifactfs.store.schema import blob_access, version_folders, versions

ENTITY, PROJECT = "local", "proj"


@dataclass
class GcStore:
    """A store of one kind, how the CLI names it, and the environment that reaches it."""

    args: list[str]
    env: dict[str, str]
    open_args: dict[str, str]
    folder: Path

    def open(self) -> Store:
        return Store(**self.open_args) if self.open_args else Store(self.folder)

    def gc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ARTIFACTFS, "gc", *self.args, *args], env=self.env,
                              capture_output=True, text=True, timeout=120)


@pytest.fixture(params=["folder+sqlite", "s3+postgresql"])
def kind(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[GcStore]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    folder = tmp_path / "store"
    if request.param == "folder+sqlite":
        yield GcStore(["--store", str(folder)], env, {}, folder)
        return
    seaweed = request.getfixturevalue("seaweed")
    for name, value in seaweed.env.items():
        monkeypatch.setenv(name, value)
    db, blobs = request.getfixturevalue("pg_url"), request.getfixturevalue("s3_url")
    yield GcStore(["--db", db, "--blobs", blobs], {**env, **seaweed.env},
                  {"db": db, "blobs": blobs}, folder)


def put(store: Store, data: bytes) -> str:
    digest = md5_b64(data)
    store.blobs.put_stream(io.BytesIO(data), digest)
    return digest


def commit(store: Store, files: dict[str, bytes], name: str = "data"):
    entries = [ManifestEntry(path, put(store, data), len(data)) for path, data in files.items()]
    return store.commit(entity=ENTITY, project=PROJECT, name=name, type_="dataset",
                        manifest=Manifest(entries))


def stored(store: Store) -> set[str]:
    return set(store.blobs.keys())


def test_grace_forms() -> None:
    assert [parse_grace(t) for t in ("24h", "30m", "7d", "0", "90s")] == [
        86400, 1800, 604800, 0, 90]
    for bad in ("24", "1w", "-1h", "h", "", "1.5h"):
        with pytest.raises(InvalidRequest, match="not a duration"):
            parse_grace(bad)


def test_bad_grace_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([ARTIFACTFS, "gc", "--store", str(tmp_path), "--grace", "2 weeks"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not a duration" in proc.stderr and "Traceback" not in proc.stderr


def test_gc_of_no_store_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([ARTIFACTFS, "gc", "--store", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "not a store folder" in proc.stderr
    assert not (tmp_path / "none").exists()  # and made none


def test_gc_removes_only_the_dead(kind: GcStore) -> None:
    """Live, deleted past the grace, deleted within it, uploaded and never committed; a
    dry run first, then the sweep; a chunked blob's index goes with it."""
    store = kind.open()
    live = commit(store, {"keep.txt": b"kept by a live version", "shared.txt": b"shared"})
    big = rand_bytes(CHUNK_SIZE + 1000, seed=1)
    dead = commit(store, {"gone.txt": b"only in a deleted version", "big.bin": big,
                          "shared.txt": b"shared"})
    store.db.delete_version(dead.id, delete_aliases=True)  # latest moves back
    orphan = put(store, b"uploaded, never committed")
    doomed = {md5_b64(b"only in a deleted version"), md5_b64(big), orphan}
    assert store.blobs.chunk_index(md5_b64(big)) is not None

    # within the grace: the deletion and the upload are too young, nothing goes
    proc = kind.gc("--grace", "1h")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("removed 0 blobs")
    before = stored(store)
    assert doomed <= before

    proc = kind.gc("--grace", "0", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["dry_run"] and report["count"] == 3
    assert {b["digest"] for b in report["blobs"]} == doomed
    assert report["bytes"] == sum(len(d) for d in (b"only in a deleted version", big,
                                                   b"uploaded, never committed"))
    assert report["live"] == 2 and report["expired_versions"] == 1
    assert stored(store) == before  # a dry run removes nothing
    proc = kind.gc("--grace", "0", "--dry-run")
    assert proc.stdout.startswith("would remove 3 blobs"), proc.stdout

    proc = kind.gc("--grace", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("removed 3 blobs"), proc.stdout
    assert stored(store) == before - doomed
    with pytest.raises(Exception, match="not found"):
        store.blobs.chunk_index(md5_b64(big))  # the blob and its index are both gone
    if not kind.open_args:  # the folder: no index file is left behind either
        assert not any((kind.folder / "chunks").rglob(f"{blob_key(md5_b64(big))}.idx"))
    with store.db.engine.connect() as conn:
        keys = set(conn.execute(sa.select(blob_access.c.blob_key)).scalars())
        folders = set(conn.execute(sa.select(version_folders.c.version_id)).scalars())
    assert not keys & {blob_key(d) for d in doomed}
    assert dead.id not in folders and live.id in folders
    # the live version reads whole, and gc finds nothing more to do
    manifest = Manifest.from_json(store.db.manifest_json(live.id))
    assert {store.blobs.read(e.digest) for e in manifest} == {b"kept by a live version",
                                                              b"shared"}
    assert kind.gc("--grace", "0").stdout.startswith("removed 0 blobs")


def test_blob_uploaded_for_a_commit_in_flight_survives(kind: GcStore) -> None:
    """The commit uploads its blob, gc runs (default grace), then the commit lands."""
    store = kind.open()
    data = b"uploaded for a commit not made yet"
    digest = put(store, data)
    store.access.grant(ENTITY, [digest])  # what an upload through the server does
    proc = kind.gc()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("removed 0 blobs") and "1 written less" in proc.stdout
    info = store.commit(entity=ENTITY, project=PROJECT, name="inflight", type_="dataset",
                        manifest=Manifest([ManifestEntry("f.txt", digest, len(data))]),
                        caller=ENTITY)
    assert store.blobs.read(digest) == data
    assert store.db.resolve(ENTITY, PROJECT, "inflight", "latest").id == info.id


def test_commit_between_its_check_and_its_insert_keeps_its_blob(kind: GcStore) -> None:
    """The narrow race even a grace of 0 leaves: a commit has checked its (old, unreferenced)
    blob and is about to insert its version when gc sweeps. gc must wait for the commit,
    see its version, and keep the blob. Without the sweep lock gc removes it and the
    version lands naming bytes that are gone."""
    store = kind.open()
    data = b"an old blob a new version takes up again"
    digest = put(store, data)
    manifest = Manifest([ManifestEntry("again.txt", digest, len(data))])
    with store.sweep_lock.shared():  # what Store.commit holds from its check to its insert
        assert store.blobs.sizes([digest]) == {digest: len(data)}
        sweeper = subprocess.Popen([ARTIFACTFS, "gc", *kind.args, "--grace", "0"],
                                   env=kind.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_the_sweep(store, sweeper)
            assert sweeper.poll() is None, sweeper.communicate()
            assert store.blobs.has(digest)
            info = store.db.commit_version(
                entity=ENTITY, project=PROJECT, name="again", type_="dataset",
                manifest_json=manifest.to_json(), digest=manifest.digest(),
                size=manifest.size, file_count=1, description=None, metadata={},
                blob_keys={blob_key(digest)})
        except BaseException:
            stop_process(sweeper)
            raise
    out, err = sweeper.communicate(timeout=60)
    assert sweeper.returncode == 0, err
    assert "1 taken up by commits meanwhile" in out, out
    assert store.blobs.read(digest) == data
    assert store.db.version_by_id(info.id).state == COMMITTED


def test_a_commit_waits_for_a_batch_being_swept(kind: GcStore) -> None:
    """A commit holds the sweep lock from its blob check to its insert: while gc holds it
    (one batch's second look and removal) a commit neither checks nor lands."""
    store = kind.open()
    data = b"committed while a batch is swept"
    digest = put(store, data)
    manifest = Manifest([ManifestEntry("f.txt", digest, len(data))])
    landed: list[str] = []

    def commit_now() -> None:
        landed.append(store.commit(entity=ENTITY, project=PROJECT, name="wait",
                                   type_="dataset", manifest=manifest).id)

    with store.sweep_lock.exclusive():
        committer = threading.Thread(target=commit_now)
        committer.start()
        committer.join(1.0)
        assert committer.is_alive() and not landed
        assert not store.db.list_versions(ENTITY, PROJECT, "wait")
    committer.join(30)
    assert landed and store.db.resolve(ENTITY, PROJECT, "wait", "latest").id == landed[0]


def _wait_for_the_sweep(store: Store, sweeper: subprocess.Popen[str]) -> None:
    """Until gc has marked and tries for the lock: on PostgreSQL its session is seen asking
    for it; on SQLite (where gc needs well under a second to get there) two seconds."""
    if store.db.engine.dialect.name == "sqlite":
        time.sleep(2.0)
        return
    asking = sa.text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                     "'%pg_try_advisory_lock%' AND pid <> pg_backend_pid()")
    deadline = time.monotonic() + 30
    with store.db.engine.connect() as conn:
        while not conn.execute(asking).scalar():
            assert time.monotonic() < deadline and sweeper.poll() is None, "gc never swept"
            time.sleep(0.05)
    time.sleep(0.3)  # and has failed to get it a few times


_COMMIT_LOOP = textwrap.dedent("""
    import io, sys, time
    from artifactfs.core.digests import md5_b64
    from artifactfs.core.errors import InvalidManifest
    from artifactfs.core.manifest import Manifest, ManifestEntry
    from artifactfs.store import Store
    args = dict(a.split("=", 1) for a in sys.argv[2:])
    store = Store(**args) if args else Store(sys.argv[1])
    old = [md5_b64(b"old %d" % i) for i in range(40)]
    deadline = time.monotonic() + float(sys.argv[1] if args else 0) + 8.0
    done = failed = 0
    i = 0
    while time.monotonic() < deadline or done < 10:
        data = b"loop %d %f" % (i, time.time())
        fresh = md5_b64(data)
        store.blobs.put_stream(io.BytesIO(data), fresh)
        entries = [ManifestEntry("new.txt", fresh, len(data)),
                   ManifestEntry("old.txt", old[i % 40], len(b"old %d" % (i % 40)))]
        try:
            store.commit(entity="local", project="proj", name="loop", type_="dataset",
                         manifest=Manifest(entries))
            done += 1
        except InvalidManifest:  # its old blob was swept before its check: upload again
            store.blobs.put_stream(io.BytesIO(b"old %d" % (i % 40)), old[i % 40])
            failed += 1
        i += 1
        print("ready", flush=True) if i == 1 else None
    print(done, failed, flush=True)
""")


def test_gc_beside_a_loop_of_commits_and_a_serving_server(kind: GcStore, tmp_path: Path
                                                          ) -> None:
    """Another process commits in a loop, each version taking up an old unreferenced blob
    and a new one, while gc (grace 0) sweeps hundreds of dead blobs and a server of the
    store answers reads. Every version committed reads whole afterwards; the server never
    failed a read."""
    store = kind.open()
    for i in range(40):
        put(store, b"old %d" % i)
    for i in range(300):
        put(store, b"dead %d" % i)
    served = commit(store, {"served.txt": b"read through the server all along"}, name="srv")
    key = store.db.create_key(ENTITY)
    server = RegistryServer(kind.folder, tmp_path / "server.log", env=kind.env,
                            db_url=kind.open_args.get("db"),
                            blobs_url=kind.open_args.get("blobs"))
    loop_args = ([str(kind.folder)] if not kind.open_args
                 else ["0", *(f"{k}={v}" for k, v in kind.open_args.items())])
    loop = subprocess.Popen([sys.executable, "-c", _COMMIT_LOOP, *loop_args], env=kind.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads: list[int] = []
    stop = threading.Event()

    def read_all_along() -> None:
        url = f"{server.url}/api/v1/blobs/{blob_key(md5_b64(b'read through the server all along'))}"
        with httpx.Client(headers={"Authorization": f"Bearer {key}"},
                          follow_redirects=True, timeout=30) as client:
            while not stop.is_set():
                reads.append(client.get(url).status_code)
                time.sleep(0.02)

    reader = threading.Thread(target=read_all_along)
    try:
        assert loop.stdout is not None and loop.stdout.readline().strip() == "ready"
        reader.start()
        proc = kind.gc("--grace", "0")
        assert proc.returncode == 0, proc.stderr
        out, err = loop.communicate(timeout=120)
        assert loop.returncode == 0, err
    finally:
        stop.set()
        if reader.is_alive():
            reader.join()
        stop_process(loop)
        server.stop()
    removed = int(proc.stdout.split()[1])
    assert removed >= 300, proc.stdout  # the dead ones, and some old ones between commits
    done, _failed = map(int, out.split())
    assert done >= 10
    assert reads and set(reads) == {200}, sorted(set(reads))
    assert store.blobs.read(md5_b64(b"read through the server all along"))
    with store.db.engine.connect() as conn:
        committed = list(conn.execute(sa.select(versions.c.id)
                                      .where(versions.c.state == COMMITTED)).scalars())
    assert len(committed) >= done + 1
    for version_id in committed:
        for entry in Manifest.from_json(store.db.manifest_json(version_id)):
            assert store.blobs.has(entry.digest), (version_id, entry.path)
    assert served.id in committed
