"""A mount on a registry server that goes away and comes back."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from pathlib import Path
from typing import BinaryIO

import pytest
from fs.conftest import drop_caches
from helpers import RegistryServer, make_tree

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.store import Store

FILES = {"cached.txt": b"read before the outage\n", "later.bin": os.urandom(40 * CHUNK_SIZE)}


@pytest.fixture
def server_env(tmp_path: Path, run_cli, env: dict[str, str], transport: str):
    if transport != "server":
        pytest.skip("needs the server transport")
    return env


def test_server_stopped_mid_use_gives_eio_then_recovers(
    server_env: dict[str, str], tmp_path: Path, run_cli, mount_factory
):
    src = make_tree(tmp_path / "src", FILES)
    assert run_cli("push", str(src), "vision/outage", "--type", "dataset").returncode == 0
    mount = mount_factory("--read-timeout", "3")
    base = mount.path / "vision/dataset/outage:v0"
    assert (base / "cached.txt").read_bytes() == FILES["cached.txt"]
    with open(base / "later.bin", "rb") as f:
        assert f.read(100) == FILES["later.bin"][:100]  # the first chunk is now cached

    url = server_env["ARTIFACTFS_REGISTRY"]
    port = int(url.rsplit(":", 1)[1])
    pid = _server_pid(port)
    os.kill(pid, signal.SIGKILL)  # the registry dies without a goodbye
    time.sleep(0.2)
    started = time.monotonic()
    with open(base / "later.bin", "rb") as f, pytest.raises(OSError) as info:
        f.seek(39 * CHUNK_SIZE)  # far beyond any read-ahead
        f.read(4096)
    assert info.value.errno == errno.EIO
    assert time.monotonic() - started < 30  # bounded retries, no hang
    drop_caches()
    assert (base / "cached.txt").read_bytes() == FILES["cached.txt"]
    assert mount.alive()

    store = Path(server_env["ARTIFACTFS_STORE"])
    revived = RegistryServer(store, tmp_path / "revived.log", env=server_env, port=port)
    try:
        with open(base / "later.bin", "rb") as f:
            assert f.read() == FILES["later.bin"]
    finally:
        revived.stop()
    assert Store(store).db.list_projects("local") == ["vision"]


def test_writes_into_an_alias_folder_go_on_while_the_registry_hangs(
    server_env: dict[str, str], tmp_path: Path, run_cli, mount_factory
):
    """Reads stuck on a registry that stopped answering hold every fetch thread. Beginning
    to stage a folder, writing, syncing and closing a file in it is local work and must
    not wait for them: it failed with EIO once the read timeout passed, and a close given
    up on leaked its descriptor."""
    src = make_tree(tmp_path / "src", FILES)
    assert run_cli("push", str(src), "vision/outage", "--type", "dataset").returncode == 0
    mount = mount_factory("--threads", "2", "--read-timeout", "3")
    notes_path = mount.path / "vision/dataset/outage:latest/notes.txt"
    pid = _server_pid(int(server_env["ARTIFACTFS_REGISTRY"].rsplit(":", 1)[1]))
    later = mount.path / "vision/dataset/outage:v0/later.bin"
    readers: list[threading.Thread] = []

    def stuck_read(f: BinaryIO, offset: int) -> None:
        with contextlib.suppress(OSError):  # EIO once the read timeout passes
            f.seek(offset)
            f.read(4096)

    with contextlib.ExitStack() as stack:
        # opened (looked up) while the registry answers, and the alias folder listed
        handles = [stack.enter_context(open(later, "rb")) for _ in range(3)]
        assert "later.bin" in os.listdir(notes_path.parent)
        os.kill(pid, signal.SIGSTOP)
        try:
            readers = [threading.Thread(target=stuck_read, args=(f, n * 10 * CHUNK_SIZE))
                       for n, f in enumerate(handles, start=1)]
            for t in readers:
                t.start()
            time.sleep(1)  # both fetch threads now wait on the stopped registry
            with open(notes_path, "wb", buffering=0) as notes:  # staging begins now
                notes.write(b"during\n" * 1000)
                os.fsync(notes.fileno())
        finally:
            os.kill(pid, signal.SIGCONT)
            for t in readers:
                t.join(60)
    assert notes_path.read_bytes() == b"during\n" * 1000
    assert mount.alive()


def _server_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (found by its socket, not by name)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            inode = fields[9]
    assert inode, f"nothing listens on {port}"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no process owns the socket on {port}")
