"""The HTTP client against a real (tiny) server that fails on purpose."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from helpers import free_port

from artifactfs.core.errors import RegistryUnavailable
from artifactfs.core.manifest import Manifest
from artifactfs.files import hash_file
from artifactfs.registry.http import HttpRegistry


class Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first request of each kind, then 201/200; records bodies."""

    seen: ClassVar[list[tuple[str, int]]] = []
    failed: ClassVar[set[str]] = set()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append((self.command, len(body)))
        if self.command not in type(self).failed:
            type(self).failed.add(self.command)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = b'{"stored": true}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_PUT = do_POST = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    Flaky.seen, Flaky.failed = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_retried_upload_sends_the_whole_file_again(flaky: str, tmp_path: Path):
    data = tmp_path / "blob.bin"
    data.write_bytes(b"x" * 3_000_000)
    registry = HttpRegistry(flaky, "key")
    try:
        registry.upload_blob(data, hash_file(data).digest)
    finally:
        registry.close()
    # first the ask for upload addresses (this registry has none to give: it stores blobs
    # itself), then the PUT through it, sent whole twice
    assert [m for m, _ in Flaky.seen if m == "POST"] == ["POST", "POST"]
    assert [s for s in Flaky.seen if s[0] == "PUT"] == [("PUT", 3_000_000), ("PUT", 3_000_000)]


def test_a_commit_is_never_retried(flaky: str):
    registry = HttpRegistry(flaky, "key")
    try:
        with pytest.raises(RegistryUnavailable):
            registry.commit(entity="e", project="p", name="n", type_="t", manifest=Manifest())
    finally:
        registry.close()
    assert [m for m, _ in Flaky.seen] == ["POST"]  # it might have succeeded: not repeated


def test_a_registry_that_is_not_there_is_reported_after_bounded_retries():
    registry = HttpRegistry(f"http://127.0.0.1:{free_port()}", "key", timeout=2.0, attempts=3)
    try:
        with pytest.raises(RegistryUnavailable) as info:
            registry.list_projects("e")
    finally:
        registry.close()
    assert "after retries" in str(info.value)
