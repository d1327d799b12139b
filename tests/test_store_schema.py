"""A store whose schema a newer artifactfs wrote is refused, not written with rows this
code cannot keep; the CLI says so in one line."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from helpers import ARTIFACTFS

from artifactfs.core.errors import ArtifactFSError
from artifactfs.store import Store


def test_a_schema_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "store")
    db = sqlite3.connect(tmp_path / "store" / "registry.sqlite3")
    (current,) = db.execute("PRAGMA user_version").fetchone()
    assert current >= 2  # blob access and commit keys at least
    db.execute(f"PRAGMA user_version = {current + 1}")
    db.close()
    with pytest.raises(ArtifactFSError, match="newer than this artifactfs knows"):
        Store(tmp_path / "store")
    proc = subprocess.run([ARTIFACTFS, "ls"], capture_output=True, text=True, timeout=60,
                          env={"ARTIFACTFS_STORE": str(tmp_path / "store"),
                               "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "upgrade artifactfs" in proc.stderr


def test_reopening_a_current_store_changes_nothing(tmp_path: Path) -> None:
    Store(tmp_path / "store").db.create_key("team")
    before = (tmp_path / "store" / "registry.sqlite3").stat().st_size
    store = Store(tmp_path / "store")
    assert store.db.check_key("afs_nothing") is None
    assert (tmp_path / "store" / "registry.sqlite3").stat().st_size == before
