"""The README's sharing flow, run as a user would: a key, a server, clients that set only the
registry and the key (they work in the key's entity), the store pushed to before there was a
server shared with a key of its entity, and a key used for another entity refused naming both.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fs.conftest import start_mount, take_down
from helpers import ARTIFACTFS, RegistryServer, make_tree

from artifactfs.store import Store


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ARTIFACTFS, *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def user(tmp_path: Path) -> dict[str, str]:
    """A user's environment: their own home, store and cache, no ARTIFACTFS_ variable."""
    home = tmp_path / "home"
    return {"PATH": "/usr/bin:/bin", "HOME": str(home)}


def test_clients_with_a_key_work_in_its_entity(user: dict[str, str], tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data", {"a.csv": b"x,y\n1,2\n"})
    shared = tmp_path / "srv"
    key = cli(user, "key", "create", "team", "--store", str(shared)).stdout.strip()
    server = RegistryServer(shared, tmp_path / "serve.log", env=user)
    try:
        client = {**user, "ARTIFACTFS_REGISTRY": server.url, "ARTIFACTFS_API_KEY": key}
        pushed = cli(client, "push", str(data), "vision/mnist", "--type", "dataset")
        assert pushed.returncode == 0, pushed.stderr
        assert pushed.stdout.strip() == "vision/mnist:v0"
        assert Store(shared).db.list_projects("team") == ["vision"]  # the key's entity
        assert cli(client, "ls").stdout.split() == ["vision"]
        ok = cli(client, "download", "vision/mnist", "--root", str(tmp_path / "out"))
        assert ok.returncode == 0, ok.stderr
        # told another entity: one line naming the key's, and what to set
        wrong = cli({**client, "ARTIFACTFS_ENTITY": "local"}, "ls")
        assert wrong.returncode == 1
        assert wrong.stderr.strip() == (
            "error: this API key is for entity 'team', not 'local': set "
            "ARTIFACTFS_ENTITY=team, or use a key made for that entity ('artifactfs key "
            "create ENTITY' where the store is)")
        # a mount with the key alone shows the key's entity too
        mount = start_mount(tmp_path / "mnt", tmp_path / "mnt.log", client)
        try:
            assert (mount.path / "vision/dataset/mnist:latest/a.csv").read_bytes() == (
                b"x,y\n1,2\n")
        finally:
            take_down(mount)
    finally:
        server.stop()


def test_a_store_pushed_to_alone_is_shared_with_a_key_of_its_entity(
    user: dict[str, str], tmp_path: Path
) -> None:
    data = make_tree(tmp_path / "data", {"a.csv": b"1"})
    own = Path(user["HOME"]) / ".local/share/artifactfs/store"
    assert cli(user, "push", str(data), "vision/mnist", "--type", "dataset").returncode == 0
    assert cli(user, "push", str(data), "vision/other", "--type", "dataset").returncode == 0
    key = cli(user, "key", "create", "local", "--store", str(own)).stdout.strip()
    server = RegistryServer(own, tmp_path / "serve.log", env=user)
    try:
        teammate = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "teammate"),
                    "ARTIFACTFS_REGISTRY": server.url, "ARTIFACTFS_API_KEY": key}
        listed = cli(teammate, "ls", "vision")
        assert listed.returncode == 0, listed.stderr
        assert {line.split()[0] for line in listed.stdout.splitlines()[1:]} == {"mnist", "other"}
    finally:
        server.stop()


def test_ls_of_an_empty_entity_says_so_on_stderr(user: dict[str, str]) -> None:
    proc = cli(user, "ls")
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.startswith("no artifacts in entity local of embedded store ")
    assert "artifactfs push DIR PROJECT/NAME --type TYPE" in proc.stderr
