"""``--read-timeout`` reaches the HTTP client: a read the mount gave up on frees its worker
thread then, instead of holding it while the client waits out its own, longer limits."""

from __future__ import annotations

import errno
import os
import signal
import threading
from pathlib import Path

import pytest
from fs.conftest import start_mount, take_down
from helpers import RegistryServer, make_tree, rand_bytes, wait_until

WARM = b"in the disk cache before the registry stops\n"
COLD = {f"c{i}.txt": rand_bytes(1024, seed=i) for i in range(6)}


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        assert exc.errno == errno.EIO, exc
        return None


def test_a_read_given_up_on_frees_its_worker_thread(
    env: dict[str, str], transport: str, tmp_path: Path, run_cli, mount_factory
):
    """With 2 worker threads and 4 reads stuck on a stopped server, the reads fail after
    --read-timeout and their threads come free soon after: a file in the disk cache (which
    needs a thread, and no registry) reads while the server is still stopped. Before, the
    client kept each thread waiting up to 30 s (its own read timeout, then retries until
    60 s), and every read in that time failed too, waiting for a thread."""
    if transport != "server":
        pytest.skip("needs the server transport")
    assert run_cli("push", str(make_tree(tmp_path / "warm", {"warm.txt": WARM})),
                   "vision/warm", "--type", "dataset").returncode == 0
    assert run_cli("push", str(make_tree(tmp_path / "cold", COLD)),
                   "vision/cold", "--type", "dataset").returncode == 0
    first = mount_factory(name="first")  # puts warm.txt in the shared disk cache
    assert (first.path / "vision/dataset/warm:v0/warm.txt").read_bytes() == WARM
    take_down(first)  # and takes the bytes it held in memory with it

    # a server of our own on the same store, so that the test stops it by its pid
    server = RegistryServer(Path(env["ARTIFACTFS_STORE"]), tmp_path / "own-server.log", env=env)
    pid = server.proc.pid
    own_env = {**env, "ARTIFACTFS_REGISTRY": server.url}
    try:
        mount = start_mount(
            tmp_path / "mnt", tmp_path / "mnt.log", own_env, "--threads", "2",
            "--read-timeout", "2", "--prefetch-files", "0", "--alias-timeout", "600",
        )
        try:
            warm = mount.path / "vision/dataset/warm:v0/warm.txt"
            cold = [mount.path / "vision/dataset/cold:v0" / name for name in COLD]
            for path in (warm, *cold):
                os.stat(path)  # looked up (and the kernel keeps the entries) while it answers
            os.kill(pid, signal.SIGSTOP)
            try:
                results: dict[Path, bytes | None] = {}
                readers = [
                    threading.Thread(target=lambda p=p: results.update({p: _read_or_none(p)}))
                    for p in cold[:4]
                ]
                for t in readers:
                    t.start()
                for t in readers:
                    t.join(60)
                assert results == dict.fromkeys(cold[:4])  # each failed with EIO
                # well inside the client's old 30 s, the given-up threads are free again
                assert wait_until(lambda: _read_or_none(warm), timeout=12) == WARM
            finally:
                os.kill(pid, signal.SIGCONT)
            assert cold[4].read_bytes() == COLD["c4.txt"]  # a new fetch
            assert cold[0].read_bytes() == COLD["c0.txt"]  # one that failed, asked again
            assert mount.alive()
        finally:
            take_down(mount)
    finally:
        server.stop()
