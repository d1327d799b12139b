"""``StdlibTransport`` (the bulk-read transport) against real TCP servers on loopback.

Each test scripts a small raw-socket HTTP/1.1 server run in threads (nothing is mocked): the
server counts the connections it accepts and records what arrived on each, so the tests can
check connection reuse, what happens when either side closes, and which headers reached
which origin. One last test reads blobs through ``HttpRegistry`` from a real
``artifactfs serve`` that is restarted under it.
"""

from __future__ import annotations

import contextlib
import http
import http.client
import json
import os
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import RegistryServer, free_port, rand_bytes, wait_until

from artifactfs.core.chunks import CHUNK_SIZE
from artifactfs.registry.http import HttpRegistry
from artifactfs.registry.transport import StdlibTransport

MiB = 1 << 20


# ---- a scripted HTTP/1.1 server ----------------------------------------------------------------


@dataclass
class Received:
    """One request as the server read it off the wire."""

    conn: int  # index of the accepted connection it came on: 0, 1, ...
    method: str
    target: str
    headers: list[tuple[str, str]]  # names lower-cased, in the order sent
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]


class Wire:
    """The server's side of one accepted connection, as a handler uses it."""

    def __init__(self, server: ScriptedServer, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock = sock
        self.index = index
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        """Close the connection (FIN) once the handler returns."""
        self.closed = True
        self.sock.close()
        self.server.closed_by_server.add(self.index)

    def reset(self) -> None:
        """Abort the connection (RST instead of FIN)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()


Handler = Callable[[Received, Wire], None]


class ScriptedServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 whose answers a test writes byte by byte.

    The handler is called for every request and writes the answer itself; when it returns,
    the server waits for the next request on that connection, unless the handler closed it.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Received] = []
        self.accepted = 0
        self.closed_by_client: set[int] = set()  # connections where the client sent EOF/RST
        self.closed_by_server: set[int] = set()
        self.errors: list[BaseException] = []  # failures of the handler itself (test bugs)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._listener], [], [], 0.05)
            if not ready:
                continue
            sock, _ = self._listener.accept()
            index, self.accepted = self.accepted, self.accepted + 1
            thread = threading.Thread(target=self._serve, args=(sock, index), daemon=True)
            self._socks.append(sock)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        wire = Wire(self, sock, index)
        buf = b""
        try:
            while not wire.closed:
                try:
                    request, buf = _read_request(sock, buf, index)
                except ConnectionResetError:
                    request = None
                if request is None:
                    self.closed_by_client.add(index)
                    return
                self.requests.append(request)
                self.handler(request, wire)
        except OSError:
            pass  # the client went away while the handler was answering
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(10)
        self._listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv or send
        for thread in self._threads:
            thread.join(10)
        assert not any(t.is_alive() for t in [self._acceptor, *self._threads])


def _read_request(sock: socket.socket, buf: bytes, index: int) -> tuple[Received | None, bytes]:
    """The next request on ``sock`` (None at EOF) and the bytes read past it."""
    while b"\r\n\r\n" not in buf:
        more = sock.recv(65536)
        if not more:
            return None, b""
        buf += more
    head, _, buf = buf.partition(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    method, target, _version = line.split(" ")
    headers = [(k.strip().lower(), v.strip()) for k, v in (f.split(":", 1) for f in fields)]
    length = int(dict(headers).get("content-length", "0"))
    while len(buf) < length:
        more = sock.recv(65536)
        if not more:
            return None, b""
        buf += more
    return Received(index, method, target, headers, buf[:length]), buf[length:]


def reply(status: int = 200, body: bytes = b"", headers: Sequence[tuple[str, str]] = (),
          *, length: int | None = None) -> bytes:
    """A whole answer with a Content-Length (``length`` overrides it; -1 leaves it out)."""
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    length = len(body) if length is None else length
    if length >= 0:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(pieces: Iterable[bytes]) -> bytes:
    """``pieces`` as a chunked body, with a chunk extension and a trailer to skip."""
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return out + b"0\r\nX-Trailer: ignored\r\n\r\n"


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], ScriptedServer]]:
    """``serve(handler)`` starts a scripted server; every one is stopped at teardown."""
    servers: list[ScriptedServer] = []

    def start(handler: Handler) -> ScriptedServer:
        servers.append(ScriptedServer(handler))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
        for server in servers:
            assert not server.errors, server.errors


@pytest.fixture
def stdlib() -> StdlibTransport:
    return StdlibTransport()


@pytest.fixture
def client(stdlib: StdlibTransport) -> Iterator[httpx.Client]:
    # trust_env=False: a proxy set in the environment would take loopback requests elsewhere
    c = httpx.Client(transport=stdlib, timeout=10.0, trust_env=False)
    try:
        yield c
    finally:
        c.close()


# ---- plain answers ---------------------------------------------------------------------------


def test_get_answers_status_headers_and_body_over_one_connection(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    def handler(req: Received, wire: Wire) -> None:
        body = f"hello {req.target}".encode()
        wire.send(reply(200, body, [("X-Token-Seen", req.header("x-token") or ""),
                                    ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]))

    server = serve(handler)
    for n in range(3):
        r = client.get(f"{server.url}/item/{n}", params={"q": "a b"}, headers={"X-Token": f"t{n}"})
        assert r.status_code == 200 and r.reason_phrase == "OK" and r.http_version == "HTTP/1.1"
        assert r.content == f"hello /item/{n}?q=a+b".encode()
        assert r.headers["x-token-seen"] == f"t{n}"
        assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]  # repeated headers kept
    assert server.accepted == 1  # keep-alive: the three requests shared one connection
    assert [q.conn for q in server.requests] == [0, 0, 0]
    assert server.requests[0].all("host") == [f"127.0.0.1:{server.port}"]  # exactly one Host


def test_range_read_arrives_whole_in_one_block(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    data = rand_bytes(8 * MiB, 1)

    def handler(req: Received, wire: Wire) -> None:
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", req.header("range") or "")
        assert m, req.headers
        start, end = int(m[1]), int(m[2]) + 1
        wire.send(reply(206, data[start:end],
                        [("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")]))

    server = serve(handler)
    for start, end in [(1001, 1001 + 5 * MiB + 7), (0, len(data))]:
        headers = {"Range": f"bytes={start}-{end - 1}"}
        with client.stream("GET", server.url + "/blob", headers=headers) as r:
            assert r.status_code == 206
            pieces = list(r.iter_bytes())
        # a known length is read into one buffer and handed over as a single block
        assert len(pieces) == 1
        assert pieces[0] == data[start:end]
    assert server.accepted == 1


def test_chunked_answer_is_read_completely(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    # pieces on both sides of the 1 MiB the transport reads at a time when no length is given
    pieces = [rand_bytes(n, n) for n in (1, 17, 3 * MiB + 5, 65536, MiB, 7)]

    def handler(req: Received, wire: Wire) -> None:
        wire.send(reply(200, chunked(pieces), [("Transfer-Encoding", "chunked")], length=-1))

    server = serve(handler)
    for _ in range(2):
        r = client.get(server.url + "/chunked")
        assert r.status_code == 200
        assert r.content == b"".join(pieces)
    assert server.accepted == 1  # the end of a chunked body frees the connection for reuse


def test_answer_delimited_by_close_is_read_and_its_connection_dropped(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    body = rand_bytes(2 * MiB + 3, 2)

    def handler(req: Received, wire: Wire) -> None:
        if req.target == "/until-close":  # neither a length nor chunks: the body ends at EOF
            wire.send(reply(200, body, length=-1))
            wire.close()
        else:
            wire.send(reply(200, b"next"))

    server = serve(handler)
    assert client.get(server.url + "/until-close").content == body
    assert client.get(server.url + "/next").content == b"next"
    assert [q.conn for q in server.requests] == [0, 1]


def test_post_json_arrives_intact(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    def handler(req: Received, wire: Wire) -> None:
        wire.send(reply(200, req.body, [("Content-Type", req.header("content-type") or "")]))

    server = serve(handler)
    payload = {"digests": [f"d{n:04d}==" for n in range(50)], "name": "wéights ✓"}
    r = client.post(server.url + "/blobs/batch", json=payload)
    assert r.status_code == 200
    assert r.json() == payload
    req = server.requests[0]
    assert req.method == "POST" and req.target == "/blobs/batch"
    assert req.header("content-type") == "application/json"
    assert req.header("content-length") == str(len(req.body))
    assert json.loads(req.body) == payload

    big = rand_bytes(300_000, 3)  # a body larger than one socket write
    assert client.post(server.url + "/echo", content=big).content == big
    assert server.accepted == 1


def test_head_and_204_have_no_body_and_keep_the_connection(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    def handler(req: Received, wire: Wire) -> None:
        if req.method == "HEAD":  # the length of the body a GET would get, and no body
            wire.send(reply(200, headers=[("Content-Type", "application/octet-stream")],
                            length=12345))
        elif req.method == "DELETE":
            wire.send(b"HTTP/1.1 204 No Content\r\nX-Done: yes\r\n\r\n")
        else:
            wire.send(reply(200, b"after"))

    server = serve(handler)
    r = client.head(server.url + "/blob")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == "12345"
    r = client.delete(server.url + "/blob")
    assert r.status_code == 204 and r.content == b"" and r.headers["x-done"] == "yes"
    assert client.get(server.url + "/blob").content == b"after"
    # closed without reading their (empty) bodies: nothing is left on the wire either
    with client.stream("HEAD", server.url + "/blob") as r:
        assert r.status_code == 200
    with client.stream("DELETE", server.url + "/blob") as r:
        assert r.status_code == 204
    assert client.get(server.url + "/blob").content == b"after"
    assert [q.method for q in server.requests] == ["HEAD", "DELETE", "GET", "HEAD", "DELETE",
                                                   "GET"]
    assert server.accepted == 1


def test_concurrent_requests_share_the_pool_safely(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    # HttpRegistry reads blobs from many worker threads through one transport
    def handler(req: Received, wire: Wire) -> None:
        wire.send(reply(200, req.target.encode() * 1000))

    server = serve(handler)

    def fetch(n: int) -> bool:
        return all(client.get(f"{server.url}/{n}/{i}").content == f"/{n}/{i}".encode() * 1000
                   for i in range(10))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(fetch, range(8)))
    assert len(server.requests) == 80
    assert server.accepted <= 8  # never more connections than requests in flight


# ---- connections closed, broken or silent ----------------------------------------------------


def test_connection_idle_past_the_expiry_is_not_reused(
    serve: Callable[[Handler], ScriptedServer]
) -> None:
    # servers close idle connections after a few seconds (uvicorn after 5); the client gives
    # them up first, so no request goes out on a connection the server is closing
    def handler(req: Received, wire: Wire) -> None:
        wire.send(reply(200, req.target.encode()))

    server = serve(handler)
    with httpx.Client(transport=StdlibTransport(idle_expiry=0.3), trust_env=False) as c:
        assert c.get(server.url + "/a").content == b"/a"
        assert c.get(server.url + "/b").content == b"/b"  # at once: the same connection
        time.sleep(0.6)
        assert c.get(server.url + "/c").content == b"/c"
    assert [(q.conn, q.target) for q in server.requests] == [(0, "/a"), (0, "/b"), (1, "/c")]
    assert wait_until(lambda: 0 in server.closed_by_client)  # and it was closed, not leaked


def test_idle_connection_closed_by_server_is_replaced(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    def handler(req: Received, wire: Wire) -> None:
        wire.send(reply(200, req.target.encode()))  # keep-alive as far as the client knows...
        if req.target == "/first":
            wire.close()  # ...but the server drops the connection once it is idle

    server = serve(handler)
    assert client.get(server.url + "/first").content == b"/first"
    assert wait_until(lambda: server.closed_by_server == {0})
    r = client.get(server.url + "/second")
    assert r.status_code == 200 and r.content == b"/second"
    assert server.accepted == 2
    assert [(q.conn, q.target) for q in server.requests] == [(0, "/first"), (1, "/second")]


def test_idle_connection_the_server_wrote_on_is_not_used(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    # some servers say 408 on a connection they time out before closing it; that answer
    # belongs to no request and must not be taken for the next one's
    first_read = threading.Event()

    def handler(req: Received, wire: Wire) -> None:
        wire.send(reply(200, req.target.encode()))
        if req.target == "/first":
            # only once the client has read the answer, so the 408 waits on the socket
            # instead of being buffered (and dropped) along with the first answer
            first_read.wait(10)
            wire.send(reply(408, b"idle too long", [("Connection", "close")]))
            wire.close()

    server = serve(handler)
    assert client.get(server.url + "/first").content == b"/first"
    first_read.set()
    assert wait_until(lambda: server.closed_by_server == {0})
    r = client.get(server.url + "/second")
    assert r.status_code == 200 and r.content == b"/second"
    assert [(q.conn, q.target) for q in server.requests] == [(0, "/first"), (1, "/second")]


def test_request_dropped_on_a_reused_connection_is_sent_again_once(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    # the race the idle check cannot see: the server closes just as the request goes out
    def handler(req: Received, wire: Wire) -> None:
        if req.conn == 0 and req.target == "/second":
            wire.close()  # read the request, closed without a byte of answer
        else:
            wire.send(reply(200, req.target.encode()))

    server = serve(handler)
    assert client.get(server.url + "/first").content == b"/first"
    assert client.get(server.url + "/second").content == b"/second"
    assert [(q.conn, q.target) for q in server.requests] == [
        (0, "/first"), (0, "/second"), (1, "/second"),
    ]


def test_request_dropped_again_after_the_retry_fails(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    def handler(req: Received, wire: Wire) -> None:
        if req.target == "/ok":
            wire.send(reply(200, b"ok"))
        else:
            wire.close()  # never answers this one, on any connection

    server = serve(handler)
    assert client.get(server.url + "/ok").content == b"ok"
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(server.url + "/dropped")
    # sent on the idle connection, then once on a new one: no more
    assert [(q.conn, q.target) for q in server.requests] == [
        (0, "/ok"), (0, "/dropped"), (1, "/dropped"),
    ]
    with pytest.raises(httpx.RemoteProtocolError):  # a fresh connection is not retried
        client.get(server.url + "/dropped")
    assert [(q.conn, q.target) for q in server.requests][3:] == [(2, "/dropped")]


@pytest.mark.parametrize("how", ["short-length", "short-long-length", "short-chunked", "reset"])
def test_connection_lost_mid_body_raises_a_transport_error(
    how: str, serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    def handler(req: Received, wire: Wire) -> None:
        if req.target != "/broken":
            wire.send(reply(200, b"whole"))
            return
        part = rand_bytes(100, 4)
        if how == "short-chunked":
            wire.send(reply(200, b"3e8\r\n" + part, [("Transfer-Encoding", "chunked")],
                            length=-1))
        elif how == "short-long-length":
            # past what the transport reads into one buffer: the streamed path, where
            # http.client's read(n) returns b"" at the early end instead of raising
            wire.send(reply(200, part, length=100 * MiB))
        else:
            wire.send(reply(200, part, length=1000))  # promises 1000 bytes, sends 100
        if how == "reset":
            wire.reset()
        else:
            wire.close()

    server = serve(handler)
    with pytest.raises(httpx.TransportError) as info:
        client.get(server.url + "/broken")
    # an httpx error, so callers that retry on TransportError (HttpRegistry) see it
    assert not isinstance(info.value, OSError | http.client.HTTPException)
    r = client.get(server.url + "/after")
    assert r.status_code == 200 and r.content == b"whole"
    assert [(q.conn, q.target) for q in server.requests] == [(0, "/broken"), (1, "/after")]


@pytest.mark.parametrize("framing", ["small", "length", "chunked"])
def test_unread_body_does_not_poison_the_pool(
    framing: str, serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    # "small": the unread body arrives with the headers and sits in http.client's buffer,
    # so the socket itself looks idle; the others leave megabytes on the wire
    big = rand_bytes(4 * MiB, 5)

    def handler(req: Received, wire: Wire) -> None:
        if req.target != "/big":
            wire.send(reply(200, req.target.encode()))
        elif framing == "small":
            wire.send(reply(200, b"unread"))
        elif framing == "length":
            wire.send(reply(200, big))
        else:
            wire.send(reply(200, chunked([big[:MiB], big[MiB:]]),
                            [("Transfer-Encoding", "chunked")], length=-1))

    server = serve(handler)
    with client.stream("GET", server.url + "/big") as r:
        assert r.status_code == 200
        if framing == "chunked":
            assert next(r.iter_bytes())  # read part of it, then give up
    # the rest of /big must not be taken for the answers to the next requests
    assert client.get(server.url + "/next").content == b"/next"
    assert client.get(server.url + "/again").content == b"/again"
    conns = [q.conn for q in server.requests]
    assert conns[1] != 0 and conns[2] == conns[1]  # and the pool works normally after


def test_silent_server_gives_read_timeout(
    serve: Callable[[Handler], ScriptedServer], stdlib: StdlibTransport
) -> None:
    def handler(req: Received, wire: Wire) -> None:
        if req.target == "/stall-body":
            wire.send(reply(200, b"x" * 10, length=1000))  # then nothing more
        elif req.target == "/ok":
            wire.send(reply(200, b"ok"))
        # "/silent": accepted and read, never answered

    server = serve(handler)
    with httpx.Client(transport=stdlib, timeout=httpx.Timeout(10.0, read=0.5),
                      trust_env=False) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get(server.url + "/silent")
        with pytest.raises(httpx.ReadTimeout):
            client.get(server.url + "/stall-body")
        assert client.get(server.url + "/ok").content == b"ok"
    # the stalled connections were abandoned, not reused
    assert [q.conn for q in server.requests] == [0, 1, 2]


def test_nothing_listening_gives_connect_error(stdlib: StdlibTransport) -> None:
    with httpx.Client(transport=stdlib, timeout=10.0, trust_env=False) as client, \
            pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{free_port()}/x")
    with pytest.raises(httpx.UnsupportedProtocol):
        stdlib.handle_request(httpx.Request("GET", "ftp://127.0.0.1/x"))


# ---- redirects and closing --------------------------------------------------------------------


def test_redirect_to_another_origin_drops_authorization(
    serve: Callable[[Handler], ScriptedServer], stdlib: StdlibTransport
) -> None:
    data = rand_bytes(5000, 6)

    def elsewhere(req: Received, wire: Wire) -> None:
        wire.send(reply(206, data[10:20]))

    static = serve(elsewhere)

    def registry(req: Received, wire: Wire) -> None:
        wire.send(reply(307, b"see elsewhere", [("Location", static.url + "/blobs/k?sig=1")]))

    home = serve(registry)
    with httpx.Client(transport=stdlib, headers={"Authorization": "Bearer secret"},
                      follow_redirects=True, timeout=10.0, trust_env=False) as client:
        for _ in range(2):
            r = client.get(home.url + "/api/blobs/k", headers={"Range": "bytes=10-19"})
            assert r.status_code == 206 and r.content == data[10:20]
            assert [h.status_code for h in r.history] == [307]
            assert str(r.url) == static.url + "/blobs/k?sig=1"
    assert [q.header("authorization") for q in home.requests] == ["Bearer secret"] * 2
    assert [q.header("authorization") for q in static.requests] == [None, None]
    assert [q.header("range") for q in static.requests] == ["bytes=10-19"] * 2
    assert home.accepted == 1 and static.accepted == 1  # each origin kept its connection


def test_close_closes_idle_connections(
    serve: Callable[[Handler], ScriptedServer], client: httpx.Client
) -> None:
    def handler(req: Received, wire: Wire) -> None:
        wire.send(reply(200, req.target.encode()))

    server = serve(handler)
    # two answers open at once: two connections, both idle in the pool afterwards
    with client.stream("GET", server.url + "/a") as a, client.stream("GET", server.url + "/b") as b:
        assert a.read() == b"/a" and b.read() == b"/b"
    assert server.accepted == 2
    assert server.closed_by_client == set()  # kept for reuse, not closed after each answer
    client.close()
    assert wait_until(lambda: server.closed_by_client == {0, 1}), server.closed_by_client


# ---- through HttpRegistry, against a real server --------------------------------------------


def test_http_registry_reads_survive_a_server_restart(registry: Any, tmp_path: Path) -> None:
    data = rand_bytes(3 * CHUNK_SIZE + 11, 7)
    digest = registry.upload(data)
    small = registry.upload(b"a small blob")
    # one attempt: HttpRegistry's retries must not be what hides a stale connection
    client = HttpRegistry(registry.url, registry.rw_key, attempts=1)
    restarted: RegistryServer | None = None
    try:
        assert client.read_blob(digest, 0, CHUNK_SIZE) == data[:CHUNK_SIZE]
        # stopping the server closes the connection idle in the client's pool
        registry.server.stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARTIFACTFS_")}
        restarted = RegistryServer(registry.store, tmp_path / "restarted.log", env=env,
                                   port=registry.server.port)
        assert client.read_blob(digest, CHUNK_SIZE, len(data)) == data[CHUNK_SIZE:]
        assert [bytes(b or b"") for b in client.read_blobs([small, digest])] == [
            b"a small blob", data,
        ]
        index = client.chunk_index(digest)
        assert index is not None and index.count == 4
    finally:
        client.close()
        if restarted is not None:
            restarted.stop()
