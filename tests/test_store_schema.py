"""The schema's versions: Alembic revisions on SQLite and PostgreSQL, a store made before
Alembic adopted with nothing lost, and a schema newer than the code refused (the CLI says so
in one line)."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import ARTIFACTFS
from pg import PgCluster
from sqlalchemy import inspect as sa_inspect

from artifactfs.core.digests import md5_b64
from artifactfs.core.errors import ArtifactFSError, NotFound, SchemaMismatch
from artifactfs.core.manifest import Manifest, ManifestEntry
from artifactfs.store import Store
from artifactfs.store.schema import HEAD_REVISION, metadata

MAIN_STORE = Path(__file__).parent / "data" / "main-store"
FUTURE = "9999_from_a_newer_artifactfs"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command in a bare environment (``PYTHONPATH`` kept: a worktree's code)."""
    base = {"PATH": "/usr/bin:/bin"}
    if "PYTHONPATH" in os.environ:
        base["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run([ARTIFACTFS, *args], capture_output=True, text=True, timeout=60,
                          env={**base, **env})


def set_revision(store: Store, revision: str) -> None:
    """Write ``revision`` into the store's alembic_version, as a newer artifactfs would."""
    with store.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = ?" if
                             store.db.engine.dialect.name == "sqlite" else
                             "UPDATE alembic_version SET version_num = %s", (revision,))
    store.db.close()


def test_a_schema_newer_than_the_code_is_refused(
        open_store: Callable[[], Store], engine_name: str, tmp_path: Path) -> None:
    store = open_store()
    set_revision(store, FUTURE)
    with pytest.raises(SchemaMismatch, match="newer than this artifactfs knows"):
        open_store()
    env = {"HOME": str(tmp_path)}
    if engine_name == "sqlite":
        env["ARTIFACTFS_STORE"] = str(tmp_path / "store")
    else:
        env.update(ARTIFACTFS_DB=store.db_url.render_as_string(hide_password=False),
                   ARTIFACTFS_BLOBS=store.root.as_uri())
    for args in (["ls"], ["serve", "--port", "1"], ["key", "create", "team"]):
        proc = cli(*args, env=env)
        assert proc.returncode == 1, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "upgrade artifactfs" in proc.stderr, args
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    status = cli("db", "status", env=env)
    assert status.returncode == 1 and "newer than this artifactfs" in status.stdout
    upgrade = cli("db", "upgrade", env=env)
    assert upgrade.returncode == 1 and "upgrade artifactfs" in upgrade.stderr


def test_a_pre_alembic_schema_past_3_is_refused(tmp_path: Path) -> None:
    """A store whose ``user_version`` a release after 3 but before Alembic could write."""
    Store(tmp_path / "store").db.close()
    db = sqlite3.connect(tmp_path / "store" / "registry.sqlite3")
    db.execute("DROP TABLE alembic_version")
    db.execute("PRAGMA user_version = 4")
    db.commit()
    db.close()
    with pytest.raises(ArtifactFSError, match="schema 4, newer than this artifactfs knows"):
        Store(tmp_path / "store")
    proc = cli("ls", env={"ARTIFACTFS_STORE": str(tmp_path / "store"), "HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "upgrade artifactfs" in proc.stderr


def test_reopening_a_current_store_changes_nothing(tmp_path: Path) -> None:
    Store(tmp_path / "store").db.create_key("team")
    before = (tmp_path / "store" / "registry.sqlite3").stat().st_size
    store = Store(tmp_path / "store")
    assert store.db.check_key("afs_nothing") is None
    assert (tmp_path / "store" / "registry.sqlite3").stat().st_size == before


def test_the_head_revision_is_the_last_script() -> None:
    from alembic.script import ScriptDirectory

    import artifactfs.store.database as database

    script = ScriptDirectory(str(Path(database.__file__).with_name("migrations")))
    assert script.get_heads() == [HEAD_REVISION]


def test_the_migrated_schema_is_the_one_the_code_uses(open_store: Callable[[], Store]) -> None:
    """The revisions, run on an empty database, make exactly the tables of schema.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = open_store()
    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


# ---- a store made by the release before Alembic ------------------------------------------


def table_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but Alembic's, sorted, read with plain sqlite3."""
    db = sqlite3.connect(path)
    try:
        names = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'alembic_version'")]
        return {n: sorted(db.execute(f"SELECT * FROM {n}").fetchall()) for n in sorted(names)}
    finally:
        db.close()


def test_a_store_made_by_the_release_before_alembic_upgrades_with_nothing_lost(
        tmp_path: Path) -> None:
    """tests/data/main-store was made by main at 47028f7 (tests/data/make_main_store.py):
    schema 3 by ``PRAGMA user_version``, no Alembic revision."""
    root = tmp_path / "store"
    shutil.copytree(MAIN_STORE, root)
    db_file = root / "registry.sqlite3"
    before = table_rows(db_file)
    assert {n: len(r) for n, r in before.items()} == {
        "aliases": 6, "api_keys": 2, "blob_access": 8, "collections": 3, "commit_keys": 5,
        "entities": 2, "projects": 2, "version_folders": 16, "versions": 6}
    proc = cli("db", "status", "--store", str(root), env={"HOME": str(tmp_path)})
    assert proc.returncode == 1 and "pre-Alembic schema 3" in proc.stdout

    store = Store(root)  # adopted at open, as an embedded store always upgraded
    after = table_rows(db_file)
    assert after.pop("runs") == after.pop("run_links") == []  # 0002_runs's tables, empty
    assert after.pop("version_tags") == []  # 0003_version_tags's
    assert after == before
    with store.db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == \
            HEAD_REVISION
    proc = cli("db", "status", "--store", str(root), env={"HOME": str(tmp_path)})
    assert proc.returncode == 0 and "current" in proc.stdout

    # it reads as it did
    keys = json.loads((root / "keys.json").read_text())
    assert store.db.check_key(keys["team"]) == ("team", False)
    assert store.db.check_key(keys["reader"]) == ("team", True)
    versions = store.db.list_versions("team", "vision", "mnist")
    assert [v.version for v in versions] == ["v0", "v1", "v3"]  # v2 was deleted
    by_alias = {a: store.db.resolve("team", "vision", "mnist", a).version
                for a in ("latest", "best", "baseline")}
    assert by_alias == {"latest": "v3", "best": "v1", "baseline": "v0"}
    with pytest.raises(NotFound):
        store.db.resolve("team", "vision", "mnist", "v2")
    v3 = store.db.resolve("team", "vision", "mnist", "v3")
    assert v3.metadata == {"rows": 3} and v3.description == "cut 3"
    manifest = Manifest.from_json(store.db.manifest_json(v3.id))
    assert store.blobs.read(manifest["train/a.csv"].digest) == b"rows 3\n"
    assert json.loads(store.db.folder_texts(v3.id, ["train/b"])[0])["files"].keys() == \
        {"c.txt"}
    assert [c.name for c in store.db.list_collections("team", "vision")] == ["mnist", "resnet"]
    assert store.db.list_entities() == ["other", "team"]

    # and works as it did: a save retried finds its version, a new one takes the next number
    again = store.commit(entity="team", project="vision", name="mnist", type_="dataset",
                         manifest=manifest, commit_key="save-key-00000003")
    assert again.id == v3.id
    data = b"after the upgrade"
    store.blobs.put_stream(io.BytesIO(data), md5_b64(data))
    v4 = store.commit(entity="team", project="vision", name="mnist", type_="dataset",
                      manifest=Manifest([ManifestEntry("new.txt", md5_b64(data), len(data))]),
                      aliases=("best",), commit_key="save-key-00000004")
    assert (v4.version, v4.aliases) == ("v4", ("best", "latest"))
    assert store.db.version_by_commit_key("team", "save-key-00000004").id == v4.id
    assert store.access.readable("team", {md5_b64(data)}) == {md5_b64(data)}
    assert store.access.readable("other", {md5_b64(data)}) == set()
    key = store.db.create_key("team")
    assert store.db.check_key(key) == ("team", False)
    after = table_rows(db_file)
    for table, rows in before.items():  # every old row is still there (best and latest moved)
        if table != "aliases":
            assert set(rows) <= set(after[table]), table


# ---- PostgreSQL: upgraded on purpose ---------------------------------------------------------


def test_postgresql_is_upgraded_by_db_upgrade_and_refused_before(
        pg_cluster: PgCluster, tmp_path: Path) -> None:
    name = pg_cluster.new_database(empty=True)
    try:
        url = pg_cluster.url(name, password="s3cret-pw")
        shown = url.replace("s3cret-pw", "***")
        with pytest.raises(SchemaMismatch, match="artifactfs db upgrade --db"):
            Store(db=url, blobs=(tmp_path / "blobs").as_uri())
        env = {"HOME": str(tmp_path), "ARTIFACTFS_DB": url,
               "ARTIFACTFS_BLOBS": (tmp_path / "blobs").as_uri()}
        refused = cli("serve", "--port", "1", env=env)
        assert refused.returncode == 1
        assert f"run: artifactfs db upgrade --db {shown}" in refused.stderr, refused.stderr
        status = cli("db", "status", "--db", url, env={"HOME": str(tmp_path)})
        assert status.returncode == 1 and "empty (no schema)" in status.stdout
        up = cli("db", "upgrade", "--db", url, env={"HOME": str(tmp_path)})
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == f"{shown}: upgraded from empty (no schema) to revision " \
            f"{HEAD_REVISION}"
        again = cli("db", "upgrade", "--db", url, env={"HOME": str(tmp_path)})
        assert again.stdout.strip() == f"{shown}: already at revision {HEAD_REVISION}"
        assert cli("db", "status", env=env).returncode == 0
        made = cli("key", "create", "team", env=env)
        assert made.returncode == 0, made.stderr
        store = Store(db=url, blobs=(tmp_path / "blobs").as_uri())
        assert store.db.check_key(made.stdout.strip()) == ("team", False)
        store.db.close()
        for proc in (refused, status, up, again, made):
            assert "s3cret-pw" not in proc.stdout + proc.stderr
    finally:
        pg_cluster.drop_database(name)


def test_a_database_password_never_shows(pg_cluster: PgCluster, tmp_path: Path) -> None:
    """Not in an error (a server that cannot be reached, a bad URL), nor in Config's repr."""
    from artifactfs.config import Config

    closed = f"postgresql://afs:s3cret-pw@127.0.0.1:{pg_cluster.port + 1}/nowhere"
    for args in (["db", "status", "--db", closed], ["db", "upgrade", "--db", closed],
                 ["key", "create", "team", "--db", closed],
                 ["serve", "--db", closed, "--blobs", (tmp_path / "b").as_uri()],
                 ["db", "status", "--db", "postgresql://afs:s3cret-pw@[bad/x"],
                 ["db", "status", "--db", "mysql://afs:s3cret-pw@127.0.0.1/x"]):
        proc = cli(*args, env={"HOME": str(tmp_path)})
        assert proc.returncode == 1, args
        assert "s3cret-pw" not in proc.stdout + proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "cannot open the database postgresql://afs:***@" in proc_text(closed, tmp_path)
    config = Config.from_env({"ARTIFACTFS_DB": closed, "HOME": str(tmp_path)})
    assert "s3cret-pw" not in repr(config)


def proc_text(url: str, tmp_path: Path) -> str:
    proc = cli("db", "status", "--db", url, env={"HOME": str(tmp_path)})
    return proc.stdout + proc.stderr


def test_postgresql_rows_of_a_newer_schema_are_not_touched(pg_url: str, tmp_path: Path) -> None:
    """`db upgrade` of a newer schema changes nothing (checked with psycopg, not the code)."""
    store = Store(db=pg_url, blobs=(tmp_path / "b").as_uri())
    store.db.create_key("team")
    set_revision(store, FUTURE)
    proc = cli("db", "upgrade", "--db", pg_url, env={"HOME": str(tmp_path)})
    assert proc.returncode == 1 and "newer than this artifactfs knows" in proc.stderr
    dsn = pg_url.replace("postgresql://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(FUTURE,)]
        assert conn.execute("SELECT count(*) FROM api_keys").fetchone() == (1,)


def test_store_urls_are_checked_in_one_line(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    blobs = (tmp_path / "b").as_uri()
    db = f"sqlite:///{tmp_path}/r.sqlite3"
    cases = {
        ("serve", "--db", db): "needs both --db and --blobs",
        ("serve", "--store", str(tmp_path / "s"), "--db", db): "either --store or --db",
        ("serve", "--db", db, "--blobs", "http://x/y"): "not of the form file:///PATH",
        ("key", "create", "team", "--db", "sqlite://"): "names a file",
        ("db", "upgrade", "--db", "postgresql://afs@127.0.0.1:5432"): "names no database",
        ("key", "create", "team", "--db", f"sqlite:///{tmp_path}/a-file/r.sqlite3"):
            "as the database's folder",
    }
    (tmp_path / "a-file").write_text("not a folder")
    for args, message in cases.items():
        proc = cli(*args, env=env)
        assert proc.returncode == 1, args
        assert message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    # the same store named both ways is one store
    made = cli("key", "create", "team", "--db", db, env=env)
    assert made.returncode == 0, made.stderr
    store = Store(db=db, blobs=blobs)
    assert store.db.check_key(made.stdout.strip()) == ("team", False)
    assert store.location == f"{db}, blobs in blob folder {tmp_path / 'b'}"
    assert Store(tmp_path / "s").location == str(tmp_path / "s")


# ---- a later revision: what the next schema change will go through ------------------------

_NEXT_REVISION = '''
"""A test's revision after the package's own: one table more."""
import sqlalchemy as sa
from alembic import op

revision = "0004_test_extra"
down_revision = "0003_version_tags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("test_extra", sa.Column("id", sa.Integer, primary_key=True))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("PRAGMA user_version = 6")  # as each revision after 0001 should
'''


@pytest.fixture
def next_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  pg_cluster: PgCluster) -> Callable[[str], str]:
    """``add(text)`` makes ``text`` this code's revision 0004, after the package's own.

    (The cluster is started first: its template database must be made by the package's
    revisions alone.)
    """
    import artifactfs.store.database as database

    folder = tmp_path / "migrations"
    shutil.copytree(Path(database.__file__).with_name("migrations"), folder,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(database, "_MIGRATIONS", folder)

    def add(text: str) -> str:
        (folder / "versions" / "0004_test_extra.py").write_text(text)
        monkeypatch.setattr(database, "HEAD_REVISION", "0004_test_extra")
        return "0004_test_extra"

    return add


def _revision(store: Store) -> str:
    with store.db.engine.connect() as conn:
        return str(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar())


def test_a_pre_alembic_store_is_stamped_then_upgraded_by_later_revisions(
        next_revision: Callable[[str], str], tmp_path: Path) -> None:
    head = next_revision(_NEXT_REVISION)
    root = tmp_path / "store"
    shutil.copytree(MAIN_STORE, root)
    before = table_rows(root / "registry.sqlite3")
    store = Store(root)
    assert _revision(store) == head
    after = table_rows(root / "registry.sqlite3")
    assert after.pop("test_extra") == []
    assert after.pop("runs") == after.pop("run_links") == []  # 0002_runs's tables
    assert after.pop("version_tags") == []  # 0003_version_tags's
    assert after == before
    with store.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA user_version").scalar() == 6


def test_postgresql_at_an_older_revision_waits_for_db_upgrade(
        next_revision: Callable[[str], str], pg_url: str, tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    head = next_revision(_NEXT_REVISION)
    from artifactfs.store.database import create_db_engine, upgrade_database

    blobs = (tmp_path / "b").as_uri()
    with pytest.raises(SchemaMismatch, match="revision 0003_version_tags; this artifactfs needs "
                                             "revision 0004_test_extra; run: artifactfs db"):
        Store(db=pg_url, blobs=blobs)
    engine = create_db_engine(make_url(pg_url).set(drivername="postgresql+psycopg"))
    try:
        before, after = upgrade_database(engine)
    finally:
        engine.dispose()
    assert (before.revision, after.revision) == ("0003_version_tags", head)
    assert _revision(Store(db=pg_url, blobs=blobs)) == head


def test_a_revision_that_fails_leaves_the_schema_as_it_was(
        next_revision: Callable[[str], str], open_store: Callable[[], Store],
        engine_name: str) -> None:
    """Every revision runs in the one transaction of its upgrade (DDL included, on both
    engines): one that fails half-way leaves neither its table nor its revision."""
    import artifactfs.store.database as database

    store = open_store()  # at 0003_version_tags, all the package's revisions
    store.db.close()
    next_revision(_NEXT_REVISION.replace(
        '        op.execute("PRAGMA user_version = 6")',
        '        op.execute("PRAGMA user_version = 6")\n'
        '    raise RuntimeError("a revision that fails half-way")'))
    engine = store.db.engine
    with pytest.raises(RuntimeError, match="half-way"):
        database.upgrade_database(engine)
    with engine.connect() as conn:
        state = database.schema_state(conn)
        tables = sa_inspect(conn).get_table_names()
    assert state.revision == "0003_version_tags"
    assert "test_extra" not in tables
    if engine_name == "sqlite":
        assert state.user_version == 5  # 0003_version_tags's; the failed revision's 6 undone
