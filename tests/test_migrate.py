"""``artifactfs migrate``: an embedded store copied into PostgreSQL and a real S3 (SeaweedFS),
served from there and read back; run twice; killed mid-copy and resumed; refused when the
target holds other data; a pre-Alembic store as the source."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import ARTIFACTFS, RegistryServer, rand_bytes, stop_process
from seaweed import SeaweedS3

from artifactfs.config import Config
from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.sdk import Api
from artifactfs.store import BlobDir, Store
from artifactfs.store.database import create_db_engine, parse_db_url
from artifactfs.store.migrate import TABLES
from artifactfs.store.schema import version_folders, versions

DATA = Path(__file__).parent / "data"


def _commit(store: Store, name: str, files: dict[str, bytes], **kwargs: object) -> str:
    entries = []
    for path, data in files.items():
        digest = md5_b64(data)
        store.blobs.put_stream(io.BytesIO(data), digest)
        entries.append(ManifestEntry(path, digest, len(data)))
    info = store.commit(entity="local", project="proj", name=name, type_="dataset",
                        manifest=Manifest(entries), **kwargs)  # type: ignore[arg-type]
    return info.id


def make_source(root: Path, *, small_files: int = 3) -> tuple[Store, str]:
    """A store with something in every table: versions with metadata and aliases, a deleted
    one, a blob larger than a chunk, an API key, a commit key, folder rows, a run that used
    one version and logged another."""
    store = Store(root)
    key = store.db.create_key("local")
    store.db.create_key("local", read_only=True)
    first = _commit(store, "data", {"a.txt": b"alpha",
                                    "dir/b.bin": rand_bytes(CHUNK_SIZE * 2 + 7, 1)},
                    metadata={"rows": 3}, description="first", aliases=("best",),
                    tags=("baseline", "needs review"))
    gone = _commit(store, "data", {"a.txt": b"alpha 2"})
    _commit(store, "data", {f"many/{i}.bin": rand_bytes(3000 + i, 100 + i)
                            for i in range(small_files)}, commit_key="save-0123456789abcdef")
    model = _commit(store, "model", {"w.pt": rand_bytes(70_000, 7)}, aliases=("prod",))
    run = store.runs.create("local", "proj", job_type="train", config={"lr": 0.1})
    store.runs.link("local", run.id, first, "used")
    store.runs.link("local", run.id, model, "logged")
    store.db.delete_version(gone)
    store.db.close()
    return store, key


def migrate(source: Path, db: str, blobs: str, env: dict[str, str], *extra: str,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ARTIFACTFS, "migrate", "--from", str(source), "--db", db,
                           "--blobs", blobs, *extra], env=env, capture_output=True, text=True,
                          timeout=300)


def table_rows(db_url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = create_db_engine(parse_db_url(db_url))
    try:
        with engine.connect() as conn:
            return {t.name: sorted(tuple(r) for r in conn.execute(sa.select(t)))
                    for t in TABLES}
    finally:
        engine.dispose()


def source_url(root: Path) -> str:
    return f"sqlite:///{root / 'registry.sqlite3'}"


@pytest.fixture
def aws_env(seaweed: SeaweedS3) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("ARTIFACTFS_", "AWS_"))}
    return {**base, **seaweed.env}


def test_migrate_to_postgresql_and_s3_then_serve_every_file(
        tmp_path: Path, pg_url: str, s3_url: str, aws_env: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    source, key = make_source(tmp_path / "src")
    dry = migrate(tmp_path / "src", pg_url, s3_url, aws_env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would copy 7 " in dry.stdout, dry.stdout

    first = migrate(tmp_path / "src", pg_url, s3_url, aws_env)
    assert first.returncode == 0, first.stderr
    assert "blobs: copied 7 " in first.stdout, first.stdout
    assert "7 blobs (1 chunk indexes) at the target" in first.stdout, first.stdout
    copied = table_rows(pg_url)
    assert copied == table_rows(source_url(tmp_path / "src"))
    assert (len(copied["runs"]), len(copied["run_links"])) == (1, 2)  # lineage goes too

    again = migrate(tmp_path / "src", pg_url, s3_url, aws_env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("nothing to copy"), again.stdout
    assert "copied 0 (0 B), 7 already there" in again.stdout

    server = RegistryServer(tmp_path, tmp_path / "server.log", env=aws_env, db_url=pg_url,
                            blobs_url=s3_url)
    try:
        env = {**aws_env, "ARTIFACTFS_REGISTRY": server.url, "ARTIFACTFS_API_KEY": key,
               "ARTIFACTFS_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
        api = Api(config=Config.from_env(env))
        try:
            source = Store(tmp_path / "src")
            read = 0
            for info in (v for c in ("data", "model")
                         for v in source.db.list_versions("local", "proj", c)):
                art = api.artifact(info.qualified_name)
                assert art.digest == info.digest and art.aliases == list(info.aliases)
                assert art.metadata == info.metadata
                root = Path(art.download(root=str(tmp_path / "out" / info.id)))
                for entry in Manifest.from_json(source.db.manifest_json(info.id)):
                    got = (root / entry.path).read_bytes()
                    assert got == source.blobs.read(entry.digest), entry.path
                    read += 1
            assert read == 6
        finally:
            api.close()
    finally:
        server.stop()
    # the ids the target makes next follow the copied ones (PostgreSQL's sequences moved)
    for name, value in aws_env.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    target = Store(db=pg_url, blobs=s3_url)
    try:
        target.db.create_key("newcomer")
        new = target.blobs.put_stream(io.BytesIO(b"new"), md5_b64(b"new")).digest
        info = target.commit(entity="newcomer", project="p2", name="fresh", type_="dataset",
                             manifest=Manifest([ManifestEntry("n.txt", new, 3)]))
        assert info.version == "v0"
    finally:
        target.db.close()
        target.blobs.close()


def make_many(root: Path, count: int) -> Store:
    """A store of ``count`` versions, each with its own blob, an alias and deep folders (ten
    rows each): so that a run spends a while on blobs and on rows (batches of 500), and a
    kill lands in either."""
    store = Store(root)
    store.db.create_key("local")
    for i in range(count):
        _commit(store, "many", {f"a/b/c/d/e/f/g/h/i/f{i}.bin": rand_bytes(8000, 1000 + i)},
                aliases=(f"tag{i}",))
    store.db.close()
    return store


def _count(db_url: str, table: sa.Table) -> int:
    engine = create_db_engine(parse_db_url(db_url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def _kill_when(proc: subprocess.Popen[bytes], reached: Callable[[], bool]) -> bool:
    """SIGKILL ``proc`` (by its pid) as soon as ``reached()``; whether it was still running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if reached():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    stop_process(proc)
    return False


def test_migrate_killed_mid_copy_resumes_to_an_equal_target(
        tmp_path: Path, pg_url: str, s3_url: str, seaweed: SeaweedS3,
        aws_env: dict[str, str]) -> None:
    count = 150
    make_many(tmp_path / "src", count)
    bucket, prefix = s3_url.removeprefix("s3://").split("/", 1)
    s3 = seaweed.client()

    def blobs_at_target() -> int:
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/blobs/")
        return int(listed.get("KeyCount", 0))

    args = [ARTIFACTFS, "migrate", "--from", str(tmp_path / "src"), "--db", pg_url,
            "--blobs", s3_url]
    # a migrate killed cannot remove its snapshot of the source's database: in tmp_path,
    # not left in /tmp by every run
    killed_env = {**aws_env, "TMPDIR": str(tmp_path)}
    # killed while blobs are copied (one at a time, so that there is time to see it)
    proc = subprocess.Popen([*args, "--workers", "1"], env=killed_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _kill_when(proc, lambda: blobs_at_target() >= 5), "finished before the kill"
    assert 5 <= blobs_at_target() < count
    assert _count(pg_url, versions) == 0
    # killed again while rows are copied: versions there, not yet all their folder rows
    # (the last table, in batches of 500 rows)
    proc = subprocess.Popen(args, env=killed_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert _kill_when(proc, lambda: _count(pg_url, versions) > 0), "finished before the kill"
    assert _count(pg_url, version_folders) < _count(source_url(tmp_path / "src"),
                                                    version_folders)
    done = migrate(tmp_path / "src", pg_url, s3_url, aws_env)
    assert done.returncode == 0, done.stderr
    assert f"copied 0 (0 B), {count} already there" in done.stdout, done.stdout
    assert "checked:" in done.stdout
    assert table_rows(pg_url) == table_rows(source_url(tmp_path / "src"))
    again = migrate(tmp_path / "src", pg_url, s3_url, aws_env)
    assert again.returncode == 0 and again.stdout.startswith("nothing to copy"), again.stdout


def test_migrate_refuses_a_target_with_other_data(tmp_path: Path, pg_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    make_source(tmp_path / "a", small_files=1)
    first = migrate(tmp_path / "a", pg_url, (tmp_path / "blobs").as_uri(), env)
    assert first.returncode == 0, first.stderr
    before = table_rows(pg_url)
    make_source(tmp_path / "b", small_files=2)  # other ids, other keys
    other = migrate(tmp_path / "b", pg_url, (tmp_path / "blobs2").as_uri(), env)
    assert other.returncode == 1
    assert other.stderr.startswith("error: the target database already holds different "
                                   "data"), other.stderr
    assert len(other.stderr.strip().splitlines()) == 1, other.stderr
    assert table_rows(pg_url) == before
    assert not list((tmp_path / "blobs2").rglob("*.bin")) and not any(
        p.is_file() for p in (tmp_path / "blobs2").rglob("*")), "blobs written before refusing"
    # a dry run into a folder that is not there makes nothing, and says what it would copy
    dry = migrate(tmp_path / "b", f"sqlite:///{tmp_path / 'new' / 'registry.sqlite3'}",
                  (tmp_path / "new").as_uri(), env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "blobs: would copy 6 " in dry.stdout and "versions 4" in dry.stdout, dry.stdout
    assert not (tmp_path / "new").exists()
    missing = migrate(tmp_path / "nowhere", pg_url, (tmp_path / "blobs").as_uri(), env)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nowhere'} is not a store folder (no registry.sqlite3 in it)"]


def test_migrate_a_store_made_before_alembic_leaves_it_untouched(tmp_path: Path) -> None:
    source = tmp_path / "main-store"
    shutil.copytree(DATA / "main-store", source)
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    target_db = f"sqlite:///{tmp_path / 'target' / 'registry.sqlite3'}"
    done = migrate(source, target_db, (tmp_path / "target").as_uri(), env)
    assert done.returncode == 0, done.stderr
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before
    upgraded = tmp_path / "upgraded"
    shutil.copytree(DATA / "main-store", upgraded)
    Store(upgraded).db.close()  # the source as its own upgrade in place reads it
    assert table_rows(target_db) == table_rows(source_url(upgraded))
    assert _count(target_db, versions) > 0


def test_a_target_blob_of_the_right_size_but_other_bytes_is_copied_again(
        tmp_path: Path, s3_url: str, seaweed: SeaweedS3, aws_env: dict[str, str]) -> None:
    """An object already under a blob's name, as long as the blob but not its bytes (a
    damaged earlier copy): its ETag gives it away, so it is replaced, not skipped."""
    source = Store(tmp_path / "src")
    data = rand_bytes(5000, 3)
    _commit(source, "data", {"x.bin": data})
    digest = md5_b64(data)
    bucket, prefix = s3_url.removeprefix("s3://").split("/", 1)
    name = blob_key(digest)
    seaweed.client().put_object(Bucket=bucket, Key=f"{prefix}/blobs/{name[:2]}/{name}",
                                Body=b"\0" * len(data))
    target_db = f"sqlite:///{tmp_path / 'target.sqlite3'}"
    done = migrate(tmp_path / "src", target_db, s3_url, aws_env)
    assert done.returncode == 0, done.stderr
    assert "blobs: copied 1 " in done.stdout, done.stdout
    got = seaweed.client().get_object(Bucket=bucket,
                                      Key=f"{prefix}/blobs/{name[:2]}/{name}")
    assert got["Body"].read() == data


def test_a_damaged_source_blob_is_named_not_copied(tmp_path: Path) -> None:
    """A source blob whose bytes no longer match its name is not written at the target (the
    writer refuses it), and the run says which one and fails, after copying the rest."""
    source = Store(tmp_path / "src")
    _commit(source, "data", {"good.txt": b"good", "bad.txt": b"bad!"})
    assert isinstance(source.blobs, BlobDir)
    bad = source.blobs.path(md5_b64(b"bad!"))
    bad.write_bytes(b"BAD!")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    target_db = f"sqlite:///{tmp_path / 'target' / 'registry.sqlite3'}"
    done = migrate(tmp_path / "src", target_db, (tmp_path / "target").as_uri(), env)
    assert done.returncode == 1
    digest = md5_b64(b"bad!")
    assert f"error: source blob {digest} is damaged" in done.stderr, done.stderr
    assert f"error: check failed: blob {digest}: missing at the target" in done.stderr
    assert "Traceback" not in done.stderr
    assert Store(tmp_path / "target").blobs.read(md5_b64(b"good")) == b"good"
