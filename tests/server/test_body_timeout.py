"""A request body that stops coming is given up: a key holder cannot hold uploads open (a
connection and a temporary file each) for ever, against a real ``artifactfs serve``."""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from server.conftest import ENTITY

WAIT = 30.0


def tmp_files(store: Any) -> int:
    return len(os.listdir(store / "tmp")) if (store / "tmp").is_dir() else 0


def stalled_upload(reg: Any, sent: int = 1000) -> socket.socket:
    """A PUT of a 1 MB blob whose body stops after ``sent`` bytes."""
    sock = socket.create_connection(("127.0.0.1", reg.server.port), timeout=WAIT)
    sock.sendall(b"PUT /api/v1/blobs/" + b"0" * 32 + b" HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer " + reg.rw_key.encode() + b"\r\n"
                 b"Content-Length: 1000000\r\n\r\n" + b"x" * sent)
    return sock


def test_an_upload_that_stops_sending_is_dropped_and_its_file_removed(
    start_registry: Callable[..., Any],
) -> None:
    reg = start_registry("--body-timeout", "1")
    socks = [stalled_upload(reg) for _ in range(5)]
    try:
        deadline = time.monotonic() + WAIT
        while tmp_files(reg.store) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)  # the uploads are under way: a temporary file each
        assert tmp_files(reg.store) == 5
        for sock in socks:  # each is closed by the server, without a byte more from us
            try:
                assert sock.recv(65536) == b""
            except ConnectionResetError:
                pass
        deadline = time.monotonic() + WAIT
        while tmp_files(reg.store) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tmp_files(reg.store) == 0  # and their temporary files are gone
    finally:
        for sock in socks:
            sock.close()
    assert "no byte of the request body" in reg.server.log_text()
    r = reg.rw.get(f"/entities/{ENTITY}/projects")
    assert r.status_code == 200, r.text


def test_an_upload_that_keeps_sending_slowly_is_not_dropped(
    start_registry: Callable[..., Any],
) -> None:
    """Only silence counts: bytes that keep coming, however slowly, keep the clock fresh."""
    reg = start_registry("--body-timeout", "1")
    sock = stalled_upload(reg, sent=0)
    try:
        body = b"y" * 1_000_000
        sent = 0
        for _ in range(8):  # 8 x 0.4 s: well past the timeout in all, never silent for it
            sock.sendall(body[sent:sent + 1000])
            sent += 1000
            time.sleep(0.4)
        sock.sendall(body[sent:])
        answer = http.client.HTTPResponse(sock)  # head and body may come in apart
        answer.begin()
        status, text = answer.status, answer.read()
    finally:
        sock.close()
    # the registry read the whole body: it answers (a digest mismatch: zeros named, y sent)
    assert status == 400, text
    assert b"DigestMismatch" in text
