"""Real mounts for tests: each started with the installed CLI and always taken down."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import ARTIFACTFS

from artifactfs.fs.mounts import FSTYPE, fuse_mount_type
from artifactfs.registry import LocalRegistry
from artifactfs.store import Store

pytestmark = pytest.mark.mount


@dataclass
class Mount:
    path: Path
    pid: int
    log: Path
    env: dict[str, str]

    def stats(self) -> dict[str, int]:
        return json.loads(os.getxattr(self.path, "user.artifactfs.stats"))

    def alive(self) -> bool:
        return _alive(self.pid)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) is gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def take_down(mount: Mount) -> None:
    """Unmount and stop the daemon by its pid, whatever state it is in."""
    if fuse_mount_type(mount.path) == FSTYPE:
        subprocess.run([ARTIFACTFS, "umount", str(mount.path)], env=mount.env,
                       capture_output=True, timeout=30)
    if not wait_gone(mount.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(mount.pid, signal.SIGTERM)
        if not wait_gone(mount.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(mount.pid, signal.SIGKILL)
            wait_gone(mount.pid)
    if fuse_mount_type(mount.path) is not None:
        subprocess.run(["fusermount3", "-uz", str(mount.path)], capture_output=True, timeout=30)


def start_mount(path: Path, log: Path, env: dict[str, str], *options: str) -> Mount:
    """``artifactfs mount PATH`` with ``env``; the Mount once it answers. The caller owns it
    and takes it down (``take_down``); benchmarks/faults.py uses this too."""
    with contextlib.suppress(OSError):  # exists, possibly as a dead mount (ENOTCONN)
        path.mkdir(exist_ok=True)
    proc = subprocess.run(
        [ARTIFACTFS, "mount", str(path), "--log-file", str(log), *options],
        env=env, capture_output=True, text=True, timeout=90,
    )
    said = log.read_text(errors="replace") if log.exists() else "(no log)"
    assert proc.returncode == 0, f"mount failed: {proc.stderr}\n{said}"
    m = re.search(r"\(pid (\d+)\)", proc.stdout)
    assert m, proc.stdout
    return Mount(path, int(m.group(1)), log, env)


@pytest.fixture
def mount_factory(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Mount]]:
    """Mount the test's store; ``mount_factory(*options)`` returns a Mount."""
    mounts: list[Mount] = []

    def make(*options: str, name: str = "mnt") -> Mount:
        mount = start_mount(tmp_path / name, tmp_path / f"{name}.log", env, *options)
        mounts.append(mount)
        return mount

    try:
        yield make
    finally:
        for mount in mounts:
            take_down(mount)


@pytest.fixture
def mounted(mount_factory: Callable[..., Mount]) -> Mount:
    return mount_factory()


def drop_caches() -> None:
    """Drop the kernel's page cache, dentries and inodes (root only)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """The real embedded registry on the test's own store, for tests with no mount."""
    reg = LocalRegistry(Store(tmp_path / "store"))
    try:
        yield reg
    finally:
        reg.close()
