"""Small helpers the tests of every layer share."""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ARTIFACTFS = str(Path(sys.executable).with_name("artifactfs"))


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``{relative path: bytes}`` under ``root``; return ``root``."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def rand_bytes(n: int, seed: int | None = None) -> bytes:
    """``n`` random bytes, the same for the same seed."""
    return random.Random(seed).randbytes(n)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until it is true or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RegistryServer:
    """A real ``artifactfs serve`` process on loopback, stopped by its pid."""

    def __init__(self, store: Path, log: Path, *extra: str, env: dict[str, str] | None = None,
                 port: int | None = None, db_url: str | None = None,
                 blobs_url: str | None = None):
        """``store``: the store folder, or with ``db_url`` (served with ``--db``) the blob
        folder (``--blobs``); with ``blobs_url`` (an ``s3://`` bucket, say) the blobs are
        there, and the metadata in ``db_url`` or the folder's own SQLite database."""
        import os
        import subprocess

        self.store = store
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [ARTIFACTFS, "serve",
             *_store_args(store, db_url, blobs_url),
             "--port", str(self.port), *extra],
            stdout=self._log_file, stderr=subprocess.STDOUT, env=env or dict(os.environ),
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                httpx.get(self.url + "/api/v1/entities/x/projects", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log_file.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _store_args(store: Path, db_url: str | None, blobs_url: str | None) -> list[str]:
    """How ``serve`` is told where its store is: ``--store``, or ``--db`` and ``--blobs``."""
    if db_url is None and blobs_url is None:
        return ["--store", str(store)]
    db = db_url or f"sqlite:///{(store / 'registry.sqlite3').resolve()}"
    return ["--db", db, "--blobs", blobs_url or store.as_uri()]


def stop_process(proc: Any) -> None:
    """Stop a ``subprocess.Popen`` by its pid: SIGTERM, then SIGKILL after 15 s."""
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def open_fd_count() -> int:
    """Files this process has open: what a test compares before and after to catch a leak."""
    return len(os.listdir("/proc/self/fd"))


def _per_inode(top: Path, measure: Callable[[os.stat_result], int]) -> int:
    """``measure`` of every file under ``top``, summed, each file once by inode: a file
    renamed from one folder to another while the walk runs counts once; a file removed
    meanwhile is skipped."""
    found: dict[int, int] = {}
    for folder, _, names in os.walk(top):
        for name in names:
            try:
                st = os.stat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            found[st.st_ino] = measure(st)
    return sum(found.values())


def allocated_bytes(top: Path) -> int:
    """What the files under ``top`` take on disk: their allocated blocks, as ``du`` counts."""
    return _per_inode(top, lambda st: st.st_blocks * 512)


def folder_bytes(top: Path) -> int:
    """Bytes of every file under ``top`` (their lengths)."""
    return _per_inode(top, lambda st: st.st_size)
