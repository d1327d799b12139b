"""A save is applied once, even when its daemon dies right after the commit reached the
registry.

The crash is reproduced exactly: the staging folder as it stood just before the save is
put back after the save committed and the daemon was killed, with the journal line the save
writes before it sends its commit: what a daemon killed between the registry's commit and
clearing its staging leaves on disk. The retried save
(with or without --force) must find its own version, clear the staging and report it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from fs.conftest import Mount, wait_gone
from fs.test_mount_tree import push
from fs.test_mount_writes import folder_of, read_tree, save, versions
from helpers import ARTIFACTFS, wait_until
from scale_out import scale_out

from artifactfs.config import Config
from artifactfs.fs.mounts import fuse_mount_type
from artifactfs.fs.saving import staging_commit_key
from artifactfs.sdk import Api, Artifact


@pytest.fixture
def dataset(api: Api, tmp_path: Path) -> Artifact:
    return push(api, tmp_path, {"a.txt": b"alpha\n", "b.txt": b"beta\n"}, aliases=())


def staging_of(env: dict[str, str]) -> Path:
    [journal] = Path(env["HOME"]).glob(".local/state/artifactfs/staging/*/vision/dataset/"
                                       "mnist:latest/journal.jsonl")
    return journal.parent


def crash_after_commit(mount: Mount, mount_factory, env: dict[str, str], run_cli,
                       tmp_path: Path) -> Mount:
    """Stage a change, save it, then leave the disk as a daemon killed right after the
    commit would have; returns the new mount over that staging."""
    folder = folder_of(mount)
    (folder / "c.txt").write_bytes(b"gamma\n")
    (folder / "a.txt").unlink()
    staged = staging_of(env)
    kept = tmp_path / "staging-before-save"
    shutil.copytree(staged, kept, symlinks=True)
    assert save(run_cli, folder) == "vision/mnist:v1"
    os.kill(mount.pid, signal.SIGKILL)
    # generous: on a loaded machine the kernel's teardown and auto_unmount's fusermount3
    # each took over 10 s
    assert wait_gone(mount.pid, timeout=60)
    # auto_unmount's own test is in test_mount_daemon.py; here the mount point must only be
    # free again, and a loaded machine's fusermount3 once took over a minute to free it
    if not wait_until(lambda: fuse_mount_type(mount.path) is None, timeout=60):
        subprocess.run(["fusermount3", "-uz", str(mount.path)], capture_output=True,
                       timeout=30)
    assert wait_until(lambda: fuse_mount_type(mount.path) is None, timeout=30)
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(kept, staged, symlinks=True)
    # the line the save journals before it sends its commit, as the killed daemon left it
    journal = staged / "journal.jsonl"
    session = json.loads(journal.read_text().splitlines()[0])["session"]
    api = Api(config=Config.from_env(env))
    try:
        made = api.registry.resolve("local", "vision", "mnist", "v1")
        key = staging_commit_key(session, api.registry.manifest(made.id))
    finally:
        api.close()
    with open(journal, "a") as f:
        f.write(json.dumps({"op": "commit", "key": key}) + "\n")
    again = mount_factory()
    status = run_cli("status", str(folder_of(again)))
    assert status.returncode == 0 and "A c.txt" in status.stdout, status.stdout
    return again


@scale_out
@pytest.mark.parametrize("force", [False, True])
def test_a_save_retried_after_a_crash_reports_its_version_and_makes_no_other(
    dataset: Artifact, mounted: Mount, mount_factory, env: dict[str, str], run_cli,
    api: Api, tmp_path: Path, force: bool
) -> None:
    mount = crash_after_commit(mounted, mount_factory, env, run_cli, tmp_path)
    folder = folder_of(mount)
    proc = run_cli("save", str(folder), *(["--force"] if force else []))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "vision/mnist:v1"
    assert versions(api) == ["v0", "v1"]
    status = run_cli("status", str(folder))
    assert "nothing staged" in status.stdout, status.stdout
    assert read_tree(folder) == {"b.txt": b"beta\n", "c.txt": b"gamma\n"}
    assert "vision/mnist:v1 already" in mount.log_text()


@scale_out
def test_the_registry_answers_a_repeated_commit_key_with_the_first_version(
    dataset: Artifact, api: Api, transport: str, env: dict[str, str]
) -> None:
    """The same key twice makes one version, on every transport; another collection may not
    reuse it; a bad key is a 400, not a 500."""
    registry = api.registry
    manifest = registry.manifest(registry.resolve("local", "vision", "mnist", "latest").id)
    # other content than v0's (identical content would return v0 itself)
    manifest.remove(next(iter(manifest.entries)))
    key = "k" * 32
    first = registry.commit(entity="local", project="vision", name="mnist", type_="dataset",
                            manifest=manifest, commit_key=key)
    second = registry.commit(entity="local", project="vision", name="mnist", type_="dataset",
                             manifest=manifest, commit_key=key)
    assert first.id == second.id and versions(api) == ["v0", "v1"]
    assert registry.version_by_commit_key("local", key).id == first.id
    assert registry.version_by_commit_key("local", "n" * 32) is None
    with pytest.raises(Exception, match="was used for"):
        registry.commit(entity="local", project="vision", name="other", type_="dataset",
                        manifest=manifest, commit_key=key)
    with pytest.raises(Exception, match="commit key"):
        registry.commit(entity="local", project="vision", name="mnist", type_="dataset",
                        manifest=manifest, commit_key="short")
    if transport != "embedded":  # a server's answer to a bad key
        r = httpx.get(env["ARTIFACTFS_REGISTRY"] + "/api/v1/entities/local/commits/bad%20key",
                      headers={"Authorization": f"Bearer {env['ARTIFACTFS_API_KEY']}"})
        assert r.status_code == 400, r.text


def test_a_retried_save_keeps_what_was_written_after_the_lost_commit(
    dataset: Artifact, mounted: Mount, mount_factory, env: dict[str, str], run_cli,
    api: Api, tmp_path: Path
) -> None:
    """The first save's commit made v1; a file written after the crash is not in it, so the
    retry must make v2 on top of v1, not pass the staging off as v1."""
    mount = crash_after_commit(mounted, mount_factory, env, run_cli, tmp_path)
    folder = folder_of(mount)
    (folder / "d.txt").write_bytes(b"delta\n")
    assert save(run_cli, folder) == "vision/mnist:v2"
    assert versions(api) == ["v0", "v1", "v2"]
    assert "nothing staged" in run_cli("status", str(folder)).stdout
    v1 = api.artifact("vision/mnist:v1").download(root=str(tmp_path / "v1"))
    assert read_tree(Path(v1)) == {"b.txt": b"beta\n", "c.txt": b"gamma\n"}
    v2 = api.artifact("vision/mnist:v2").download(root=str(tmp_path / "v2"))
    assert read_tree(Path(v2)) == {"b.txt": b"beta\n", "c.txt": b"gamma\n", "d.txt": b"delta\n"}


def test_a_save_whose_version_was_deleted_since_commits_again(
    dataset: Artifact, mounted: Mount, mount_factory, env: dict[str, str], run_cli,
    api: Api, tmp_path: Path
) -> None:
    mount = crash_after_commit(mounted, mount_factory, env, run_cli, tmp_path)
    api.artifact("vision/mnist:v1").delete(delete_aliases=True)
    folder = folder_of(mount)
    assert save(run_cli, folder) == "vision/mnist:v2"
    assert versions(api) == ["v0", "v2"]
    v2 = api.artifact("vision/mnist:v2").download(root=str(tmp_path / "v2"))
    assert read_tree(Path(v2)) == {"b.txt": b"beta\n", "c.txt": b"gamma\n"}


@scale_out
def test_what_is_written_while_a_save_runs_is_never_lost(
    dataset: Artifact, mounted: Mount, run_cli, env: dict[str, str], api: Api, tmp_path: Path
) -> None:
    """Files written during a save end up in its version or stay staged for the next."""
    folder = folder_of(mounted)
    with open(folder / "big.bin", "wb") as f:
        for _ in range(48):
            f.write(os.urandom(1 << 20))
    proc = subprocess.Popen([ARTIFACTFS, "save", str(folder)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert wait_until(lambda: "blobs (" in mounted.log_text(), timeout=60)
    written = {}
    for i in range(20):  # while it uploads, commits and ends
        data = f"late {i}\n".encode()
        (folder / f"late{i}.txt").write_bytes(data)
        written[f"late{i}.txt"] = data
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.strip() == "vision/mnist:v1"
    if "still_staged" in mounted.log_text() or "stay staged" in err:
        assert save(run_cli, folder) == "vision/mnist:v2"
    latest = api.artifact("vision/mnist:latest").download(root=str(tmp_path / "latest"))
    got = read_tree(Path(latest))
    for name, data in written.items():
        assert got.get(name) == data, f"{name} was lost"
    assert "nothing staged" in run_cli("status", str(folder)).stdout
