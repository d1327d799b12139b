"""Folders of artifactfs's own are the user's alone: the disk cache (every entity's bytes
this user read), a mount's staging and its control sockets.

Another local user (uid 65534 here, run for real) can neither read a cached file, nor
hold the cache's eviction lock (which once wedged every read of the owner's mount), nor list
staged names; a folder planted by someone else, or a symlink in its place, is refused.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from artifactfs.cache.disk import ContentCache
from artifactfs.core.errors import ArtifactFSError
from artifactfs.files import private_folder
from artifactfs.fs.staging import Staging

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def as_nobody(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/bin/python3", "-c", code, *args], user=NOBODY,
                          capture_output=True, text=True, timeout=30, cwd="/")


def test_the_cache_is_private_and_its_lock_cannot_be_held_by_others(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)  # the way to it is open, as a home folder often is
    cache = ContentCache(root, 1 << 20)
    cache.put("ab" * 16, b"secret bytes of another entity")
    cache.evict()
    [cached] = [p for p in (root).rglob("*") if p.is_file() and "ab" * 16 in p.name]
    assert mode(cache.objects) == mode(cache.tmp) == 0o700
    assert mode(cached) == 0o600 and mode(root / "evict.lock") == 0o600
    read = as_nobody("import sys; open(sys.argv[1], 'rb').read()", str(cached))
    assert read.returncode != 0 and "PermissionError" in read.stderr
    lock = as_nobody("import fcntl, sys; fcntl.flock(open(sys.argv[1]), fcntl.LOCK_EX)",
                     str(root / "evict.lock"))
    assert lock.returncode != 0 and "PermissionError" in lock.stderr


def test_folders_made_wider_before_are_narrowed(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / "objects.v2").mkdir(parents=True, mode=0o755)
    os.chmod(root / "objects.v2", 0o755)
    (root / "evict.lock").touch(mode=0o644)
    os.chmod(root / "evict.lock", 0o644)
    cache = ContentCache(root, 1 << 20)
    cache.evict()
    assert mode(root / "objects.v2") == 0o700 and mode(root / "evict.lock") == 0o600


def test_a_mounts_staging_folder_is_private(tmp_path: Path) -> None:
    staging = Staging(tmp_path / "staging" / "0123456789abcdef")
    assert mode(staging.root) == 0o700


def test_a_folder_of_another_user_or_a_symlink_is_refused(tmp_path: Path) -> None:
    planted = tmp_path / "planted"
    planted.mkdir()
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(ArtifactFSError, match="not a folder owned by uid"):
        private_folder(planted)
    (tmp_path / "c4").mkdir()
    (tmp_path / "c4" / "objects.v2").symlink_to(planted)  # the cache's folder, planted
    with pytest.raises(ArtifactFSError, match=r"objects\.v2"):
        ContentCache(tmp_path / "c4", 1 << 20)
