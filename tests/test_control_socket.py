"""Where a mount's control socket goes: a socket left by a killed daemon is replaced, one
a live daemon answers on is never taken over."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

from artifactfs.core.errors import ArtifactFSError
from artifactfs.fs.control import control_socket_path

MOUNT_ID = "0123456789abcdef"


def test_a_dead_socket_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    path, own = control_socket_path(runtime, MOUNT_ID)
    assert own is None and path.parent == runtime
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()  # the file stays, as a SIGKILLed daemon leaves it
    assert path.exists()
    assert control_socket_path(runtime, MOUNT_ID)[0] == path and not path.exists()
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen(1)
        with pytest.raises(ArtifactFSError, match="answers on"):
            control_socket_path(runtime, MOUNT_ID)
        assert path.exists()


def test_a_folder_too_deep_for_a_socket_gets_a_private_one(tmp_path: Path) -> None:
    """The user's own folder under /tmp, reused (a killed daemon leaves no folder); a
    fresh one when another user planted that name."""
    deep = tmp_path / ("d" * 120)
    path, own = control_socket_path(deep, MOUNT_ID)
    assert own is None and path.parent.name == f"artifactfs-{os.getuid()}"
    folder = path.parent.stat()
    assert (folder.st_mode & 0o777) == 0o700 and folder.st_uid == os.getuid()
    assert len(str(path).encode()) <= 107
    assert control_socket_path(deep, MOUNT_ID)[0] == path
    with tempfile.TemporaryDirectory() as fake_tmp:
        planted = Path(fake_tmp) / f"artifactfs-{os.getuid()}"
        planted.mkdir()
        os.chown(planted, 65534, 65534)
        old = tempfile.tempdir
        tempfile.tempdir = fake_tmp
        try:
            path, own = control_socket_path(deep, MOUNT_ID)
        finally:
            tempfile.tempdir = old
        assert own is not None and path.parent == own and own.parent == Path(fake_tmp)
        assert (own.stat().st_mode & 0o777) == 0o700
