"""A reference-model test of alias folders (hypothesis, stateful).

Random sequences of create, write, truncate, rename, unlink, mkdir, rmdir, chmod, daemon
kill and remount, save and discard run on an alias folder of a real mount and, step by
step, on a plain folder: every call must give the same result (or errno) on both, and the two
trees must stay equal. After a save, the new version must download equal to the plain
folder as a version keeps it (files, bytes and executable bits; no empty folders, no exact
modes); after a discard the plain folder goes back to the last saved state, as the alias
folder does.

Bounded to stay quick: a few examples of a few dozen steps over seven paths and small
files, one mount for them all (each example starts a new collection with
``mkdir NAME:latest``, so none sees another's versions).
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fs.conftest import Mount, take_down, wait_gone
from fs.test_mount_tools import posix_tree
from helpers import ARTIFACTFS, wait_until
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from artifactfs.config import Config
from artifactfs.fs.mounts import fuse_mount_type
from artifactfs.sdk import Api, Artifact

pytestmark = pytest.mark.mount

PATHS = st.sampled_from(["a", "b", "d", "d/a", "d/b", "e", "e/a"])
DATA = st.binary(max_size=300)
MODES = st.sampled_from([0o644, 0o755, 0o600, 0o700])


class MountHolder:
    """One mount for every example; a kill and remount replaces it in place."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.path = root / "mnt"
        self.path.mkdir()
        self.api = Api(config=Config.from_env(env))
        seed = Artifact("seed", "dataset")  # so that model/dataset/ exists to mkdir in
        seed._client = self.api
        with seed.new_file("seed.txt", mode="w") as f:
            f.write("seed\n")
        seed.save(project="model")
        self.mount = self._start()
        self.names = itertools.count()

    def _start(self) -> Mount:
        log = self.root / "mnt.log"
        proc = subprocess.run([ARTIFACTFS, "mount", str(self.path), "--log-file", str(log)],
                              env=self.env, capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stderr
        found = re.search(r"\(pid (\d+)\)", proc.stdout)
        assert found, proc.stdout
        return Mount(self.path, int(found.group(1)), log, self.env)

    def kill_and_remount(self) -> None:
        os.kill(self.mount.pid, signal.SIGKILL)
        assert wait_gone(self.mount.pid, timeout=60)  # generous: slow on a loaded machine
        # auto_unmount takes the dead mount away; mounting before it has would let it take
        # the new mount away instead
        assert wait_until(lambda: fuse_mount_type(self.path) is None, timeout=60)
        self.mount = self._start()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([ARTIFACTFS, *args], env=self.env, capture_output=True,
                              text=True, timeout=120)

    def close(self) -> None:
        self.api.close()
        take_down(self.mount)


def outcome(action: Any, *args: Any) -> str:
    try:
        action(*args)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "ok"


def tree(root: Path) -> list[tuple[Any, ...]]:
    """Names, kinds, exact modes and bytes under ``root`` (what the folder shows now)."""
    out: list[tuple[Any, ...]] = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(dirpath, name)
            mode = stat.S_IMODE(path.lstat().st_mode)
            rel = path.relative_to(root).as_posix()
            out.append((rel, "dir", oct(mode)) if path.is_dir()
                       else (rel, "file", oct(mode), path.read_bytes()))
    return out


def as_saved(root: Path) -> None:
    """Make a plain folder what a version keeps of it: no empty folders, files 0755 or
    0644 by their executable bit, folders 0755."""
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(dirpath, name)
            path.chmod(0o755 if path.stat().st_mode & 0o111 else 0o644)
        for name in dirs:
            path = Path(dirpath, name)
            if not any(path.iterdir()):
                path.rmdir()
            else:
                path.chmod(0o755)


class AliasFolderModel(RuleBasedStateMachine):
    holder: MountHolder

    def __init__(self) -> None:
        super().__init__()
        holder = self.holder
        self.name = f"m{next(holder.names)}"
        self.plain = holder.root / f"plain-{self.name}"
        self.plain.mkdir()
        self.saved = holder.root / f"saved-{self.name}"  # the last saved state, as saved
        self.saved.mkdir()
        os.mkdir(self.folder)  # a new collection, staged until its first save
        self.saves = 0
        self.remounts = 0
        self.has_version = False

    @property
    def folder(self) -> Path:
        return self.holder.path / "model/dataset" / f"{self.name}:latest"

    def both(self, label: str, action: Any, *rels: str) -> None:
        """Run ``action(path, ...)`` on the mount and on the plain folder; same outcome."""
        got = outcome(action, *(self.folder / r for r in rels))
        want = outcome(action, *(self.plain / r for r in rels))
        assert got == want, f"{label} {rels}: mount {got}, plain folder {want}"

    # ---- the calls -----------------------------------------------------------------------

    @rule(path=PATHS, data=DATA)
    def create(self, path: str, data: bytes) -> None:
        self.both("create", lambda p: write_file(p, data, os.O_CREAT | os.O_TRUNC, 0), path)

    @rule(path=PATHS, data=DATA, offset=st.integers(0, 400))
    def write(self, path: str, data: bytes, offset: int) -> None:
        self.both(f"write at {offset}", lambda p: write_file(p, data, 0, offset), path)

    @rule(path=PATHS, size=st.integers(0, 500))
    def truncate(self, path: str, size: int) -> None:
        self.both(f"truncate to {size}", lambda p: os.truncate(p, size), path)

    @rule(src=PATHS, dst=PATHS)
    def rename(self, src: str, dst: str) -> None:
        self.both("rename", os.rename, src, dst)

    @rule(path=PATHS)
    def unlink(self, path: str) -> None:
        self.both("unlink", os.unlink, path)

    @rule(path=PATHS)
    def mkdir(self, path: str) -> None:
        self.both("mkdir", os.mkdir, path)

    @rule(path=PATHS)
    def rmdir(self, path: str) -> None:
        self.both("rmdir", os.rmdir, path)

    @rule(path=PATHS, mode=MODES)
    def chmod(self, path: str, mode: int) -> None:
        self.both(f"chmod {mode:o}", lambda p: os.chmod(p, mode), path)

    # ---- the daemon and the registry -----------------------------------------------------

    @precondition(lambda self: self.remounts < 1)
    @rule()
    def kill_and_remount(self) -> None:
        self.remounts += 1
        self.holder.kill_and_remount()

    @precondition(lambda self: self.saves < 3)
    @rule()
    def save(self) -> None:
        self.saves += 1
        proc = self.holder.cli("save", str(self.folder))
        if proc.returncode != 0:  # right only when nothing a version keeps has changed
            assert "nothing is staged" in proc.stderr, proc.stderr
            assert posix_tree(self.plain) == posix_tree(self.saved)
            return
        self.has_version = True
        version = proc.stdout.strip().rsplit(":", 1)[1]
        art = self.holder.api.artifact(f"model/{self.name}:{version}")
        shutil.rmtree(self.saved)
        art.download(root=str(self.saved))
        as_saved(self.plain)  # the alias folder now shows the version
        assert posix_tree(self.saved) == posix_tree(self.plain)

    @rule()
    def discard(self) -> None:
        proc = self.holder.cli("discard", str(self.folder))
        assert proc.returncode == 0, proc.stderr
        shutil.rmtree(self.plain)
        shutil.copytree(self.saved, self.plain, symlinks=True)
        as_saved(self.plain)
        if not self.has_version:  # the new collection is gone: start it again
            assert not self.folder.exists()
            os.mkdir(self.folder)

    # ---- after every step ----------------------------------------------------------------

    @invariant()
    def same_tree(self) -> None:
        assert tree(self.folder) == tree(self.plain)


def write_file(path: Path, data: bytes, flags: int, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY | flags, 0o644)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MountHolder]:
    root = tmp_path_factory.mktemp("model")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
    env.update(ARTIFACTFS_STORE=str(root / "store"), ARTIFACTFS_CACHE_DIR=str(root / "cache"),
               HOME=str(root / "home"))
    old_umask = os.umask(0o022)
    made = MountHolder(root, env)
    try:
        yield made
    finally:
        made.close()
        os.umask(old_umask)


def test_alias_folder_follows_the_plain_folder_model(holder: MountHolder):
    AliasFolderModel.holder = holder
    run_state_machine_as_test(
        AliasFolderModel,
        settings=settings(max_examples=6, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow], database=None),
    )
