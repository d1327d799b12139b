"""``artifactfs mount --run RUN_ID``: a real mount records that the run used each version it
read, once per version, at its first read of file bytes; with a read-only key on a server;
nothing without a run; a record that fails fails no read, and a later read records it."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fs.conftest import Mount, start_mount, take_down
from fs.test_mount_tree import push
from helpers import ARTIFACTFS, wait_until

import artifactfs
from artifactfs.sdk import Api
from artifactfs.store import Store

FILES = {"a.txt": b"first file\n" * 50, "sub/b.bin": bytes(range(256)) * 300}


def _uses(api: Api, run_id: str) -> list[str]:
    return [a.qualified_name for a in api.run(run_id).used_artifacts()]


def _link_rows(store: Path) -> int:
    db = sqlite3.connect(store / "registry.sqlite3")
    try:
        return int(db.execute("SELECT count(*) FROM run_links").fetchone()[0])
    finally:
        db.close()


def _read_only(env: dict[str, str], store: Path, transport: str) -> dict[str, str]:
    """The training job's environment: on a server, a read-only key of the same entity."""
    if transport == "embedded":
        return env
    return {**env, "ARTIFACTFS_API_KEY": Store(store).db.create_key("local", read_only=True)}


def test_a_mount_with_run_records_each_version_read_once(
        api: Api, tmp_path: Path, env: dict[str, str], transport: str) -> None:
    v0 = push(api, tmp_path, FILES)
    v1 = push(api, tmp_path, {**FILES, "a.txt": b"changed\n"})
    other = push(api, tmp_path, {"x.txt": b"x"}, name="labels", aliases=())
    run = artifactfs.init(project="vision", job_type="train", api=api)
    job_env = _read_only(env, tmp_path / "store", transport)
    mount = start_mount(tmp_path / "job", tmp_path / "job.log", job_env, "--read-only",
                        "--run", run.id)
    try:
        top = mount.path / "vision/dataset"
        assert sorted(p.name for p in top.iterdir())  # listing reads no file: no use
        assert sorted(p.name for p in (top / "mnist:v0").iterdir()) == ["a.txt", "sub"]
        time.sleep(0.3)
        assert _uses(api, run.id) == []
        assert (top / "mnist:v0/a.txt").read_bytes() == FILES["a.txt"]
        assert (top / "mnist:v0/sub/b.bin").read_bytes() == FILES["sub/b.bin"]
        assert (top / "mnist:best/a.txt").read_bytes() == b"changed\n"  # best is v1 now
        assert (top / "labels:latest/x.txt").read_bytes() == b"x"
        want = sorted([v0.qualified_name, v1.qualified_name, other.qualified_name])
        wait_until(lambda: sorted(_uses(api, run.id)) == want)
        (top / "mnist:v1/sub/b.bin").read_bytes()  # v1 again, another file: no new record
        time.sleep(0.3)
        log = mount.log_text()
        for version in (v0, v1, other):
            assert log.count(f"run {run.id} used {version.qualified_name}") == 1, log
        assert "could not record" not in log
        stats = mount.stats()
        assert (stats["run"], stats["uses_recorded"], stats["uses_failed"]) == (run.id, 3, 0)
    finally:
        take_down(mount)
    assert [r.id for r in api.artifact("vision/mnist:v0").used_by()] == [run.id]
    run.finish()


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_without_a_run_nothing_is_recorded_and_a_bad_run_stops_the_mount(
        api: Api, tmp_path: Path, env: dict[str, str],
        mount_factory: Callable[..., Mount]) -> None:
    push(api, tmp_path, FILES)
    mount = mount_factory("--read-only")
    assert (mount.path / "vision/dataset/mnist:v0/a.txt").read_bytes() == FILES["a.txt"]
    time.sleep(0.3)
    assert _link_rows(tmp_path / "store") == 0
    for args, extra, said in (
            (["--run", "Not-An-Id"], {}, "error: --run: run id 'Not-An-Id' is not a run id"),
            ([], {"ARTIFACTFS_RUN_ID": "zz99zz99"}, "run zz99zz99 not found in entity local")):
        folder = tmp_path / f"m-{len(args)}"
        folder.mkdir()
        done = subprocess.run([ARTIFACTFS, "mount", str(folder), "--log-file",
                               str(tmp_path / "bad.log"), *args], env={**env, **extra},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_a_record_the_database_cannot_take_now_fails_no_read_and_is_made_later(
        api: Api, tmp_path: Path, env: dict[str, str]) -> None:
    """Another process holds the store's write lock (as a long commit or gc would), past the
    mount's busy timeout (1 s, the database URL's): the record fails, the read neither fails
    nor waits for it; once the lock is gone, the next read of that version records it."""
    version = push(api, tmp_path, FILES)
    run = artifactfs.init(project="vision", api=api)
    store = tmp_path / "store"
    mount = start_mount(tmp_path / "job", tmp_path / "job.log", {
        **env, "ARTIFACTFS_DB": f"sqlite:///{store}/registry.sqlite3?timeout=1",
        "ARTIFACTFS_BLOBS": store.as_uri()}, "--read-only", "--run", run.id)
    try:
        base = mount.path / "vision/dataset/mnist:v0"
        assert sorted(p.name for p in base.iterdir()) == ["a.txt", "sub"]
        lock = sqlite3.connect(store / "registry.sqlite3", isolation_level=None)
        try:
            lock.execute("BEGIN EXCLUSIVE")
            started = time.monotonic()
            assert (base / "a.txt").read_bytes() == FILES["a.txt"]
            assert time.monotonic() - started < 0.9  # not held up by the record
            wait_until(lambda: "could not record that run" in mount.log_text())
            said = mount.log_text()
            assert "tried again at a later read" in said and "database" in said, said
        finally:
            lock.close()  # the lock goes with its connection
        assert _uses(api, run.id) == []
        assert (base / "sub/b.bin").read_bytes() == FILES["sub/b.bin"]
        wait_until(lambda: _uses(api, run.id) == [version.qualified_name])
    finally:
        take_down(mount)


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_a_refused_record_fails_no_read_and_is_not_asked_again(
        api: Api, tmp_path: Path, mount_factory: Callable[..., Mount]) -> None:
    """The run's row is taken out of the database under the running mount (as an operator
    could): the record is refused (NotFound), the read is not; later reads of the version
    do not ask again (no call and no warning per read)."""
    push(api, tmp_path, FILES)
    run = artifactfs.init(project="vision", api=api)
    mount = mount_factory("--read-only", "--run", run.id)
    db = sqlite3.connect(tmp_path / "store" / "registry.sqlite3", isolation_level=None)
    try:
        db.execute("DELETE FROM runs WHERE id = ?", (run.id,))
    finally:
        db.close()
    base = mount.path / "vision/dataset/mnist:v0"
    assert (base / "a.txt").read_bytes() == FILES["a.txt"]
    wait_until(lambda: f"run {run.id} not found" in mount.log_text())
    assert (base / "sub/b.bin").read_bytes() == FILES["sub/b.bin"]
    time.sleep(0.3)
    assert mount.log_text().count("could not record that run") == 1
    assert (mount.stats()["uses_recorded"], mount.stats()["uses_failed"]) == (0, 1)
    assert "not tried again" in mount.log_text() and mount.alive()
