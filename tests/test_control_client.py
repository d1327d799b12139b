"""The CLI's control client against a real Unix socket whose far end misbehaves.

A daemon that answers garbage, hangs up mid-answer or sends lines outside the protocol must
give ControlError (which the CLI prints as one line), never a JSON or socket traceback.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from artifactfs.fs.control_client import ControlError, request


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A socket that answers each connection with the next canned reply, then closes."""
    path = str(tmp_path / "c.sock")
    replies: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                if replies:
                    conn.sendall(replies.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path, replies
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)


@pytest.mark.parametrize(("reply", "said"), [
    (b"", "closed the connection before answering"),
    (b'{"ok": tr', "closed the connection before answering"),
    (b"\x00\xff garbage\n", "not JSON"),
    (b"[1, 2]\n", "not a JSON object"),
    (b'{"hello": 1}\n', "neither progress nor result"),
    (b'{"progress": {"phase": "upload"}}\n', "closed the connection before answering"),
])
def test_a_misbehaving_daemon_gives_control_error(
    daemon: tuple[str, list[bytes]], reply: bytes, said: str
) -> None:
    path, replies = daemon
    replies.append(reply)
    with pytest.raises(ControlError, match=said):
        request(path, {"op": "status"}, timeout=10)


def test_progress_lines_reach_the_callback_before_the_answer(
    daemon: tuple[str, list[bytes]]
) -> None:
    path, replies = daemon
    replies.append(b'{"progress": {"n": 1}}\n{"progress": {"n": 2}}\n{"ok": true, "v": 3}\n')
    seen: list[dict] = []
    assert request(path, {"op": "save"}, timeout=10, on_progress=seen.append) == {
        "ok": True, "v": 3}
    assert seen == [{"n": 1}, {"n": 2}]


def test_nobody_listening_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        request(str(tmp_path / "absent.sock"), {"op": "status"}, timeout=5)
