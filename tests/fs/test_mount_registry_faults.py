"""One collection that the registry answers badly must not take the rest of a mount down.

The registry is a real ``artifactfs serve``; between it and the mount sits a small
forwarding proxy on loopback that answers HTTP 500 for the requests naming one collection,
as a registry does when one of its rows is damaged. Everything else passes through.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fs.conftest import Mount
from fs.test_mount_tree import push
from helpers import wait_until

from artifactfs.sdk import Api

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class FaultProxy(ThreadingHTTPServer):
    """Forwards to ``upstream``; answers 500 to any path containing one of ``failing``."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = httpx.Client(base_url=upstream, timeout=60.0)
        self.failing: set[str] = set()
        self.failed = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if any(part in self.path for part in self.server.failing):
            self.server.failed += 1
            reply = b'{"error": {"type": "InternalError", "message": "injected"}}'
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP | {"host"}}
        r = self.server.upstream.request(self.command, self.path, headers=headers, content=body)
        self.send_response(r.status_code)
        for k, v in r.headers.items():
            if k.lower() not in _HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(r.content)))
        self.end_headers()
        self.wfile.write(r.content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward


@pytest.fixture
def transport() -> str:
    return "server"


@pytest.fixture
def proxy(env: dict[str, str]) -> Iterator[FaultProxy]:
    server = FaultProxy(env["ARTIFACTFS_REGISTRY"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        server.upstream.close()
        thread.join(10)


def test_a_collection_answered_with_500_leaves_the_rest_of_the_mount_working(
    api: Api, tmp_path: Path, proxy: FaultProxy, mount_factory, env: dict[str, str]
) -> None:
    push(api, tmp_path, {"g.txt": b"good\n"}, name="good", aliases=())
    push(api, tmp_path, {"b.txt": b"bad\n"}, name="bad", aliases=())
    other = push(api, tmp_path, {"o.txt": b"other\n"}, name="elsewhere", aliases=())
    assert other.project == "vision"
    api.registry.commit(entity="local", project="audio", name="speech", type_="dataset",
                        manifest=api.registry.manifest(other.id))
    env["ARTIFACTFS_REGISTRY"] = proxy.url  # the mount talks to the registry through it
    mount: Mount = mount_factory()
    proxy.failing = {"/collections/bad/", "/collections/bad?"}
    listing = os.listdir(mount.path / "vision" / "dataset")
    assert proxy.failed > 0  # the broken collection was asked for, and failed
    assert "good:latest" in listing and "elsewhere:v0" in listing
    assert not any(name.startswith("bad:") for name in listing)
    with pytest.raises(OSError) as caught:
        os.listdir(mount.path / "vision" / "dataset" / "bad:latest")
    assert caught.value.errno in (errno.EIO, errno.ENOENT)
    # the registry is not taken for down: folders never listed before still list at once
    assert (mount.path / "vision" / "dataset" / "good:latest" / "g.txt").read_bytes() == b"good\n"
    assert sorted(os.listdir(mount.path / "audio" / "dataset")) == ["speech:latest", "speech:v0"]
    assert "registry unreachable" not in mount.log_text()
    proxy.failing = set()  # mended: the collection comes back
    assert wait_until(lambda: "bad:latest" in os.listdir(mount.path / "vision" / "dataset"))
