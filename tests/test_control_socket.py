"""Where a mount's control socket goes: a socket left by a killed daemon is replaced, one
a live daemon answers on is never taken over."""

from __future__ import annotations

import socket
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
    deep = tmp_path / ("d" * 120)
    path, own = control_socket_path(deep, MOUNT_ID)
    try:
        assert own is not None and path.parent == own
        assert (own.stat().st_mode & 0o777) == 0o700
        assert len(str(path).encode()) <= 107
    finally:
        if own is not None:
            own.rmdir()
