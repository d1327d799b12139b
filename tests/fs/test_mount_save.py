"""``artifactfs save``, ``status`` and ``discard`` on staged alias folders of a real mount.

A save uploads only the blobs the registry lacks and commits one new version; it refuses when
the alias moved since staging began (unless forced); staged changes survive a killed daemon;
a save that fails leaves the staging as it was, ready to run again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from fs.conftest import Mount, wait_gone
from fs.test_mount_server_faults import _server_pid
from fs.test_mount_tree import push
from fs.test_mount_writes import (
    check_version,
    errno_of,
    folder_of,
    kill_and_remount,
    q,
    read_tree,
    save,
    sh,
    versions,
)
from helpers import ARTIFACTFS, RegistryServer, make_tree
from scale_out import scale_out

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.core.digests import blob_key, md5_b64
from artifactfs.sdk import Api, Artifact
from artifactfs.store import Store

BASE = {
    "README.txt": b"the base version\n",
    "keep.txt": b"never touched\n",
    "rm-me.txt": b"to be deleted\n",
    "mv-me.txt": b"to be renamed\n",
    "data/one.bin": os.urandom(70_000),
    "data/two.bin": os.urandom(CHUNK_SIZE + 99),
}


@pytest.fixture
def dataset(api: Api, tmp_path: Path) -> Artifact:
    return push(api, tmp_path, BASE, aliases=())  # vision/mnist:v0 (latest)


def blob_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in (store / "blobs").rglob("*") if p.is_file())


def status_json(run_cli, folder: Path) -> dict:
    proc = run_cli("status", str(folder), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def stage_some_changes(folder: Path) -> dict[str, bytes]:
    """Create, modify, delete and rename in ``folder``; return what it should now hold."""
    expected = dict(BASE)
    (folder / "new.txt").write_bytes(b"created\n")
    expected["new.txt"] = b"created\n"
    os.mkdir(folder / "newdir")
    (folder / "newdir/inner.bin").write_bytes(b"\x00\x01" * 5000)
    expected["newdir/inner.bin"] = b"\x00\x01" * 5000
    with open(folder / "README.txt", "ab") as f:
        f.write(b"appended\n")
    expected["README.txt"] += b"appended\n"
    with open(folder / "data/two.bin", "r+b") as f:
        f.seek(CHUNK_SIZE)
        f.write(b"!!")
    two = bytearray(BASE["data/two.bin"])
    two[CHUNK_SIZE:CHUNK_SIZE + 2] = b"!!"
    expected["data/two.bin"] = bytes(two)
    os.remove(folder / "rm-me.txt")
    del expected["rm-me.txt"]
    os.rename(folder / "mv-me.txt", folder / "renamed.txt")
    expected["renamed.txt"] = expected.pop("mv-me.txt")
    return expected


# ---- saving -----------------------------------------------------------------------------------


@scale_out
def test_copied_folder_is_saved_as_a_new_version_and_the_old_one_is_unchanged(
    dataset: Artifact, api: Api, run_cli, mounted: Mount, tmp_path: Path
):
    extra = {
        "a.txt": b"copied in\n",
        "sub/b.bin": os.urandom(3 * CHUNK_SIZE + 17),  # chunked: gets a chunk index
        "sub/deeper/c.txt": b"c\n",
        "empty.txt": b"",
    }
    src = make_tree(tmp_path / "extra", extra)
    folder = folder_of(mounted)
    sh(f"cp -r {q(src)} {q(folder)}/")
    assert read_tree(folder / "extra") == extra

    out = save(run_cli, folder, "-m", "more files", "--alias", "reviewed")
    assert out == "vision/mnist:v1"
    expected = dict(BASE, **{f"extra/{k}": v for k, v in extra.items()})
    check_version(api, mounted, "vision/mnist:v1", expected)
    v1 = api.artifact("vision/mnist:v1")
    assert v1.description == "more files"
    assert sorted(v1.aliases) == ["latest", "reviewed"]
    assert v1.manifest["extra/sub/b.bin"].extra  # the chunk index hash of a large file
    for path in BASE:  # unchanged files are inherited, not copied
        assert v1.manifest[path].digest == dataset.manifest[path].digest
    root = Path(v1.download(tmp_path / "downloaded"))
    assert read_tree(root) == expected

    v0 = api.artifact("vision/mnist:v0")
    assert v0.digest == dataset.digest
    assert v0.aliases == []
    check_version(api, mounted, "vision/mnist:v0", BASE)
    assert read_tree(folder) == expected  # the alias folder shows the saved version
    assert api.artifact("vision/mnist:reviewed").version == "v1"
    # the folder keeps its inode through the save, and its time stamps are now v1's
    # (after the 1 s attribute timeout of a writable folder's contents)
    v1_time = datetime.fromisoformat(v1.created_at).timestamp()
    v0_time = datetime.fromisoformat(v0.created_at).timestamp()
    assert v1_time != v0_time
    time.sleep(1.5)
    for path in (folder / "data", folder / "keep.txt", folder / "extra/sub/b.bin"):
        assert abs(path.stat().st_mtime - v1_time) < 1e-3, path


def test_adding_a_file_to_a_1gib_version_uploads_only_that_file(
    api: Api, env: dict[str, str], run_cli, mount_factory, tmp_path: Path
):
    src = tmp_path / "huge"
    src.mkdir()
    with open(src / "weights.bin", "wb") as f:
        f.truncate(1 << 30)  # sparse: cheap to make and to read
    art = Artifact("huge", "model")
    art._client = api
    art.add_dir(src)
    art = art.save(project="vision")
    (src / "weights.bin").unlink()
    big = art.manifest["weights.bin"]
    store = Path(env["ARTIFACTFS_STORE"])
    try:
        before = blob_bytes(store)
        assert before >= 1 << 30
        mount = mount_factory()
        folder = folder_of(mount, name="huge", type_="model")
        small = os.urandom(12_345)
        (folder / "notes.txt").write_bytes(small)
        assert save(run_cli, folder) == "vision/huge:v1"

        assert blob_bytes(store) - before == len(small)  # only the new file was uploaded
        assert "(1 blobs uploaded)" in mount.log_text()  # not even sent to be deduplicated
        manifest = api.artifact("vision/huge:v1").manifest
        assert sorted(e.path for e in manifest) == ["notes.txt", "weights.bin"]
        inherited = manifest["weights.bin"]
        assert (inherited.digest, inherited.size) == (big.digest, 1 << 30)
        assert inherited.extra == big.extra  # the chunk index hash is inherited too
        assert manifest["notes.txt"].digest == md5_b64(small)
        assert mount.stats()["fetch_bytes"] == 0  # the 1 GiB file was never copied up
        assert (mount.path / "vision/model/huge:v1/notes.txt").read_bytes() == small
        assert os.stat(mount.path / "vision/model/huge:v1/weights.bin").st_size == 1 << 30
    finally:
        key = blob_key(big.digest)
        with contextlib.suppress(OSError):
            (store / "blobs" / key[:2] / key).unlink()  # give the disk back


def test_mkdir_name_latest_starts_a_new_collection(
    dataset: Artifact, api: Api, run_cli, mounted: Mount, tmp_path: Path
):
    push(api, tmp_path, {"w.bin": b"weights"}, name="resnet", aliases=(), type_="model")
    type_dir = mounted.path / "vision/dataset"
    fresh = type_dir / "fresh:latest"
    os.mkdir(fresh)
    assert os.listdir(fresh) == []
    assert "fresh:latest" in os.listdir(type_dir)
    assert errno_of(lambda: os.mkdir(fresh)) == errno.EEXIST  # staged already
    files = {"a.txt": b"first file\n", "sub/b.bin": os.urandom(50_000)}
    (fresh / "a.txt").write_bytes(files["a.txt"])
    os.mkdir(fresh / "sub")
    (fresh / "sub/b.bin").write_bytes(files["sub/b.bin"])
    assert status_json(run_cli, fresh) == {
        "folder": "vision/dataset/fresh:latest", "base": None,
        "added": ["a.txt", "sub/b.bin"], "modified": [], "deleted": [],
    }

    assert save(run_cli, fresh) == "vision/fresh:v0"
    art = api.artifact("vision/fresh:v0")
    assert art.type == "dataset"
    assert art.aliases == ["latest"]
    check_version(api, mounted, "vision/fresh:v0", files)
    assert read_tree(fresh) == files
    assert {"fresh:v0", "fresh:latest"} <= set(os.listdir(type_dir))

    refused = {
        "mnist:v3": errno.EROFS,  # a version is made by saving, never by mkdir
        "brandnew:v0": errno.EROFS,
        "brandnew:best": errno.EROFS,  # only NAME:latest starts a collection
        "mnist:latest": errno.EEXIST,
        "mnist:v0": errno.EEXIST,
        "fresh:latest": errno.EEXIST,
    }
    for name, code in refused.items():
        assert errno_of(lambda n=name: os.mkdir(type_dir / n)) == code, name
    # the collection exists under another type: the name is taken in the project
    assert errno_of(lambda: os.mkdir(mounted.path / "vision/model/mnist:latest")) == (
        errno.EEXIST
    )
    assert errno_of(lambda: os.mkdir(type_dir / "resnet:latest")) == errno.EEXIST
    assert not api.artifact_exists("vision/brandnew")
    assert versions(api) == ["v0"]
    assert versions(api, "vision/fresh") == ["v0"]


# ---- status and discard -----------------------------------------------------------------------


def test_status_lists_changes_and_discard_drops_them(
    dataset: Artifact, api: Api, run_cli, mounted: Mount, env: dict[str, str]
):
    folder = folder_of(mounted)
    clean = run_cli("status", str(folder))
    assert clean.returncode == 0, clean.stderr
    assert "nothing staged" in clean.stdout
    assert status_json(run_cli, folder)["added"] == []

    stage_some_changes(folder)
    proc = run_cli("status", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "vision/dataset/mnist:latest: changes on top of v0",
        "M README.txt",
        "M data/two.bin",
        "D mv-me.txt",
        "A new.txt",
        "A newdir/inner.bin",
        "A renamed.txt",
        "D rm-me.txt",
    ]
    want = {
        "folder": "vision/dataset/mnist:latest", "base": "v0",
        "added": ["new.txt", "newdir/inner.bin", "renamed.txt"],
        "modified": ["README.txt", "data/two.bin"],
        "deleted": ["mv-me.txt", "rm-me.txt"],
    }
    assert status_json(run_cli, folder) == want
    assert status_json(run_cli, folder / "newdir") == want  # any path inside works too
    in_version = run_cli("status", str(folder_of(mounted, "v0")))
    assert in_version.returncode != 0
    assert "version folder" in in_version.stderr and "Traceback" not in in_version.stderr

    proc = run_cli("discard", str(folder))
    assert proc.returncode == 0, proc.stderr
    assert "discarded 7 changes" in proc.stdout
    assert read_tree(folder) == BASE  # the folder shows the base version again
    assert not (folder / "new.txt").exists()
    assert sorted(os.listdir(folder)) == ["README.txt", "data", "keep.txt", "mv-me.txt",
                                          "rm-me.txt"]
    assert status_json(run_cli, folder) == {
        "folder": "vision/dataset/mnist:latest", "base": "v0",
        "added": [], "modified": [], "deleted": [],
    }
    staging = Path(env["HOME"]) / ".local/state/artifactfs/staging"
    assert list(staging.rglob("journal.jsonl")) == []  # nothing left on disk
    nothing = run_cli("save", str(folder))
    assert nothing.returncode != 0 and "nothing is staged" in nothing.stderr
    assert versions(api) == ["v0"]

    (folder / "after.txt").write_bytes(b"staging again after a discard\n")
    assert save(run_cli, folder) == "vision/mnist:v1"
    check_version(api, mounted, "vision/mnist:v1",
                  dict(BASE, **{"after.txt": b"staging again after a discard\n"}))
    (folder / "one.txt").write_bytes(b"one change")
    proc = run_cli("discard", str(folder))
    assert proc.returncode == 0 and "discarded 1 change in" in proc.stdout, proc.stdout


# ---- a killed daemon --------------------------------------------------------------------------


def test_staged_changes_survive_sigkill_and_remount(
    dataset: Artifact, api: Api, run_cli, mount_factory
):
    first = mount_factory(name="mnt")
    folder = folder_of(first)
    expected = stage_some_changes(folder)
    sh(f"mv {q(folder / 'data')} {q(folder / 'moved-data')}")  # a folder renamed too
    for rel in ("data/one.bin", "data/two.bin"):
        expected["moved-" + rel] = expected.pop(rel)
    assert read_tree(folder) == expected
    fresh = first.path / "vision/dataset/fresh:latest"  # a new collection, staged
    os.mkdir(fresh)
    (fresh / "f.txt").write_bytes(b"new collection\n")

    second = kill_and_remount(first, mount_factory)  # same mount point: same staging
    folder = folder_of(second)
    assert read_tree(folder) == expected
    assert status_json(run_cli, folder) == {
        "folder": "vision/dataset/mnist:latest", "base": "v0",
        "added": ["moved-data/one.bin", "moved-data/two.bin", "new.txt", "newdir/inner.bin",
                  "renamed.txt"],
        "modified": ["README.txt"],
        "deleted": ["data/one.bin", "data/two.bin", "mv-me.txt", "rm-me.txt"],
    }
    (folder / "after-remount.txt").write_bytes(b"still writable\n")  # the journal goes on
    expected["after-remount.txt"] = b"still writable\n"
    assert save(run_cli, folder) == "vision/mnist:v1"
    check_version(api, second, "vision/mnist:v1", expected)
    assert versions(api) == ["v0", "v1"]

    assert "fresh:latest" in os.listdir(second.path / "vision/dataset")
    fresh = second.path / "vision/dataset/fresh:latest"
    assert read_tree(fresh) == {"f.txt": b"new collection\n"}
    assert save(run_cli, fresh) == "vision/fresh:v0"
    check_version(api, second, "vision/fresh:v0", {"f.txt": b"new collection\n"})


# ---- two mounts, one alias --------------------------------------------------------------------


def test_second_save_of_a_moved_alias_is_refused_then_forced(
    dataset: Artifact, api: Api, run_cli, mount_factory
):
    one, two = mount_factory(name="one"), mount_factory(name="two")
    first, second = folder_of(one), folder_of(two)
    (first / "from-one.txt").write_bytes(b"one\n")
    (second / "from-two.txt").write_bytes(b"two\n")
    os.remove(second / "rm-me.txt")

    assert save(run_cli, first) == "vision/mnist:v1"
    refused = run_cli("save", str(second))
    assert refused.returncode != 0
    assert "moved from v0 to v1" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert versions(api) == ["v0", "v1"]  # nothing was committed
    assert api.artifact("vision/mnist:latest").version == "v1"
    assert status_json(run_cli, second)["added"] == ["from-two.txt"]  # still staged
    assert (second / "from-two.txt").read_bytes() == b"two\n"

    assert save(run_cli, second, "--force") == "vision/mnist:v2"
    expected = {k: v for k, v in BASE.items() if k != "rm-me.txt"}
    expected |= {"from-one.txt": b"one\n", "from-two.txt": b"two\n"}
    check_version(api, two, "vision/mnist:v2", expected)
    check_version(api, one, "vision/mnist:v1", dict(BASE, **{"from-one.txt": b"one\n"}))
    assert read_tree(second) == expected
    assert versions(api) == ["v0", "v1", "v2"]


# ---- a save that fails ------------------------------------------------------------------------


def test_failed_save_keeps_the_staging_and_can_run_again(
    dataset: Artifact, api: Api, run_cli, mount_factory, env: dict[str, str],
    transport: str, tmp_path: Path
):
    store = Path(env["ARTIFACTFS_STORE"])
    mount = mount_factory()
    folder = folder_of(mount)
    expected = stage_some_changes(folder)
    staged = status_json(run_cli, folder)
    port = int(env.get("ARTIFACTFS_REGISTRY", ":0").rsplit(":", 1)[1])
    killed, revived = False, []
    try:
        try:
            if transport == "server":
                pid = _server_pid(port)
                os.kill(pid, signal.SIGKILL)  # the registry dies without a goodbye
                killed = True
                assert wait_gone(pid)
            else:
                blobs = store / "blobs"
                proc = subprocess.run(["chattr", "-R", "+i", str(blobs)], capture_output=True,
                                      text=True)
                if proc.returncode != 0:
                    pytest.skip(f"chattr +i is not supported here: {proc.stderr.strip()}")

            failed = run_cli("save", str(folder))
            assert failed.returncode != 0
            assert failed.stderr.strip(), "a failed save says why"
            assert "Traceback" not in failed.stderr + failed.stdout
            assert Store(store).db.list_versions("local", "vision", "mnist")[-1].version == "v0"
            assert mount.alive()
            for rel in ("new.txt", "newdir/inner.bin", "README.txt", "data/two.bin"):
                assert (folder / rel).read_bytes() == expected[rel]  # staged bytes are local
            assert status_json(run_cli, folder) == staged  # the staging is intact
        finally:
            if killed:
                revived.append(RegistryServer(store, tmp_path / "revived.log", env=env,
                                              port=port))
            if transport != "server":
                subprocess.run(["chattr", "-R", "-i", str(store / "blobs")],
                               capture_output=True)

        assert read_tree(folder) == expected
        assert save(run_cli, folder) == "vision/mnist:v1"
        assert versions(api) == ["v0", "v1"]  # exactly one new version
        deadline = time.monotonic() + 10  # the mount may answer new names from memory for
        while time.monotonic() < deadline and not (folder.parent / "mnist:v1").is_dir():
            time.sleep(0.2)  # a few seconds after the registry was unreachable
        check_version(api, mount, "vision/mnist:v1", expected)
    finally:
        for server in revived:
            server.stop()


@pytest.mark.parametrize("transport", ["embedded"], indirect=True)
def test_save_on_a_terminal_shows_its_uploads(
    dataset: Artifact, run_cli, mounted: Mount, env: dict[str, str], tmp_path: Path
) -> None:
    """Like push, a save run on a terminal (script(1) gives it one) draws a bar of the
    bytes it uploads."""
    folder = folder_of(mounted)
    (folder / "big.bin").write_bytes(os.urandom(24 << 20))
    command = f"stty cols 120 rows 40; {ARTIFACTFS} save {folder}"
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout
    assert "uploading" in proc.stdout and "vision/mnist:v1" in proc.stdout, proc.stdout
